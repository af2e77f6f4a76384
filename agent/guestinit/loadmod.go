//go:build linux

package guestinit

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// loadModules loads the modules listed in orderFile (one path per line,
// relative to modDir, in load order) with finit_module. A module already
// loaded is fine; a module that fails to load is reported and the rest are
// still loaded. It returns how many modules were loaded.
func loadModules(log *slog.Logger, modDir, orderFile string) (int, error) {
	f, err := os.Open(orderFile)
	if err != nil {
		return 0, fmt.Errorf("open module list: %w (the image was built without it; rebuild it with make image)", err)
	}
	defer f.Close()
	var errs []error
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rel := strings.TrimSpace(sc.Text())
		if rel == "" || strings.HasPrefix(rel, "#") {
			continue
		}
		if err := finitModule(filepath.Join(modDir, rel)); err != nil {
			errs = append(errs, err)
			log.Warn("module did not load", "module", ModuleName(rel), "err", err)
			continue
		}
		n++
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("read module list: %w", err))
	}
	return n, errors.Join(errs...)
}

func finitModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open module: %w", err)
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("finit_module %s: %w", path, err)
	}
	return nil
}

// kernelRelease returns uname -r.
func kernelRelease() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("uname: %w", err)
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}

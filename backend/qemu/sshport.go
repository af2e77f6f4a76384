package qemu

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/mbvm/mb/internal/atomicfile"
	"github.com/mbvm/mb/internal/layout"
)

// RememberedSSHPort is the automatic SSH port a VM had last time (0 for
// none), from its directory.
func RememberedSSHPort(dir string) int {
	data, err := os.ReadFile(filepath.Join(dir, layout.SSHPortState))
	if err != nil {
		return 0
	}
	p, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || p <= 0 || p > 65535 {
		return 0
	}
	return p
}

// autoSSHPort picks the SSH port of a VM whose spec names none: on the
// first attempt the one it had last time when it is free, else a new one.
func autoSSHPort(log *slog.Logger, dir string, attempt int, pick func() (int, error)) (int, error) {
	if attempt == 1 {
		if p := RememberedSSHPort(dir); p != 0 {
			if err := checkPortFree("ssh_port", "tcp", p); err == nil {
				return p, nil
			}
			log.Warn("the SSH port this VM had last time is taken: choosing a new one", "port", p)
		}
	}
	return pick()
}

// rememberSSHPort keeps the automatic port for the next start.
func rememberSSHPort(log *slog.Logger, dir string, port int) {
	err := atomicfile.Write(filepath.Join(dir, layout.SSHPortState), []byte(strconv.Itoa(port)+"\n"), 0o600)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Warn("could not remember the SSH port", "port", port, "error", err)
	}
}

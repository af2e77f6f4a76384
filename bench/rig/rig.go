// Package rig runs mb's real programs for the benchmark and the failure
// suite: it builds the mb and vmhost binaries once, makes a short temporary
// $MB_HOME with the prebuilt mini image linked in, runs `mb` commands
// against it, starts and kills the daemon, and spawns stand-alone vmhost
// processes. Everything is real: processes, sockets and (for the qemu
// backend) QEMU itself.
package rig

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/internal/testenv"
	"github.com/mbvm/mb/vm/image"
)

// RequireVMEnv is the environment variable that turns a missing image,
// daemon or CLI into a test failure instead of a skip (testenv's rule).
const RequireVMEnv = testenv.RequireEnv

// RequireVM reports whether MB_REQUIRE_VM=1.
func RequireVM() bool { return testenv.Required() }

// DefaultReadyLine is what the mini image prints on the serial console once
// its agent is up, used when the manifest names none.
const DefaultReadyLine = "mb-agent: ready"

// ModuleRoot walks up from dir to the directory holding mb's go.mod.
func ModuleRoot(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", dir, err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && bytes.Contains(data, []byte("module github.com/mbvm/mb\n")) {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod of github.com/mbvm/mb above %s (run from the repository)", dir)
		}
		d = parent
	}
}

// Binaries are the programs built for a run. A binary that did not build
// has an empty path and its error says why; parts that need it report that
// instead of a number.
type Binaries struct {
	Dir       string
	MB        string
	VMHost    string
	MBErr     error
	VMHostErr error
}

// Build compiles cmd/mb and cmd/vmhost from the module at root into dir,
// each on its own so a half-written CLI does not stop the vmhost parts.
// `mb` finds vmhost next to itself.
func Build(ctx context.Context, root, dir string) *Binaries {
	b := &Binaries{Dir: dir}
	build := func(pkg, name string) (string, error) {
		out := filepath.Join(dir, name)
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, pkg)
		cmd.Dir = root
		if msg, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build %s: %w: %s", pkg, err, firstLines(string(msg), 6))
		}
		return out, nil
	}
	b.VMHost, b.VMHostErr = build("./cmd/vmhost", "vmhost")
	b.MB, b.MBErr = build("./cmd/mb", "mb")
	return b
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = append(lines[:n], "...")
	}
	return strings.Join(lines, "; ")
}

// NewHome makes a short temporary $MB_HOME under /tmp (socket paths must
// stay under 104 bytes, which long test directories break).
func NewHome(prefix string) (string, error) {
	d, err := os.MkdirTemp("/tmp", prefix)
	if err != nil {
		return "", fmt.Errorf("make a temporary MB_HOME: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(d, "vms"), 0o700); err != nil {
		return "", fmt.Errorf("make %s/vms: %w", d, err)
	}
	return d, nil
}

// Image is a prebuilt image found in the user's own $MB_HOME (or ~/.mb).
type Image struct {
	Name     string
	Manifest *image.Manifest
}

// ReadyLine is the console line that says the guest is ready.
func (i *Image) ReadyLine() string {
	if i.Manifest.ReadyLine != "" {
		return i.Manifest.ReadyLine
	}
	return DefaultReadyLine
}

// FindImage loads the named image from the user's $MB_HOME or ~/.mb, where
// `make image` writes it.
func FindImage(name string) (*Image, error) {
	h, err := layout.Dir()
	if err != nil {
		return nil, err
	}
	m, err := image.Load(h, name)
	if err != nil {
		return nil, err
	}
	return &Image{Name: name, Manifest: m}, nil
}

// LinkImage links img into mbHome/images, so a temporary home boots the
// prebuilt image without copying or rebuilding it.
func LinkImage(mbHome string, img *Image) error {
	dir := layout.ImagesDir(mbHome)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("make %s: %w", dir, err)
	}
	link := filepath.Join(dir, img.Name)
	if err := os.Symlink(img.Manifest.Dir, link); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("link image %s into %s: %w", img.Manifest.Dir, link, err)
	}
	return nil
}

// VMSlot takes the machine-wide lock that VM tests of every package share
// (/tmp/mb-vm-tests.lock), so two harnesses never boot TCG guests at the
// same time on a small machine. Release it with the returned function.
func VMSlot(ctx context.Context) (func(), error) {
	path := filepath.Join(os.TempDir(), "mb-vm-tests.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, fmt.Errorf("open VM test lock %s: %w", path, err)
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for VM test lock %s (another package is booting VMs): %w", path, ctx.Err())
		case <-t.C:
		}
	}
}

// WaitForLine polls a file until a line containing want appears (or ctx
// ends) and returns when it saw it. Only bytes after offset are searched,
// so a log appended to across runs is not fooled by an earlier boot.
func WaitForLine(ctx context.Context, path, want string, offset int64, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if found, err := fileHasLine(path, want, offset); err != nil {
			return err
		} else if found {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %q in %s: %w", want, path, ctx.Err())
		case <-t.C:
		}
	}
}

func fileHasLine(path, want string, offset int64) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, 0); err != nil {
		return false, fmt.Errorf("seek %s: %w", path, err)
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), want) {
			return true, nil
		}
	}
	return false, nil
}

// FileSize returns the size of path, 0 when it does not exist.
func FileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// Poll calls cond every interval until it returns true or an error, or ctx
// ends. what names the awaited condition in the error.
func Poll(ctx context.Context, every time.Duration, what string, cond func() (bool, error)) error {
	t := time.NewTicker(every)
	defer t.Stop()
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("wait for %s: %w (last error: %v)", what, ctx.Err(), last)
			}
			return fmt.Errorf("wait for %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
}

package sockfile

import (
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// The socket ends up at its path with the mode asked, under any umask, and
// replaces a stale one; no temporary name is left behind.
func TestListen(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	path := filepath.Join(dir, "x.sock")
	if err := os.WriteFile(path, nil, 0o644); err != nil { // stale
		t.Fatal(err)
	}
	ln, err := Listen(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v, %v; want a 0600 socket", fi.Mode(), err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if m, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(m) != 0 {
		t.Errorf("temporary names left: %v", m)
	}
}

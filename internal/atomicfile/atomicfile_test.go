package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

// A link planted where mb writes a file (a marker, a PID file, spec.yaml)
// is replaced, and the file it points at is left alone.
func TestWriteReplacesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "precious")
	if err := os.WriteFile(target, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "daemon.pid")
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, []byte("123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "precious\n" {
		t.Errorf("written through the link: target now %q", b)
	}
	fi, err := os.Lstat(p)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s after Write: %v, %v; want a regular file, mode 0600", p, fi, err)
	}
	if b, _ := os.ReadFile(p); string(b) != "123\n" {
		t.Errorf("content %q", b)
	}
}

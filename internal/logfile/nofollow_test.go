package logfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// plant makes dir/name a symlink to a file holding "precious" and returns
// the target.
func plant(t *testing.T, dir, name string) string {
	t.Helper()
	target := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(target, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	return target
}

func checkUntouched(t *testing.T, target string) {
	t.Helper()
	if b, err := os.ReadFile(target); err != nil || string(b) != "precious\n" {
		t.Errorf("the link's target was written: %q, %v", b, err)
	}
}

// A daemon.log or vmhost.log planted as a symlink is not written through.
func TestOpenRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := plant(t, dir, "daemon.log")
	if w, err := Open(filepath.Join(dir, "daemon.log"), 0, 0); !errors.Is(err, ErrNotRegular) {
		if err == nil {
			_, _ = w.Write([]byte("log line\n"))
			w.Close()
		}
		t.Errorf("Open through a symlink: err = %v, want ErrNotRegular", err)
	}
	if f, err := OpenAppend(filepath.Join(dir, "daemon.log")); !errors.Is(err, ErrNotRegular) {
		if err == nil {
			_, _ = f.Write([]byte("log line\n"))
			f.Close()
		}
		t.Errorf("OpenAppend through a symlink: err = %v, want ErrNotRegular", err)
	}
	checkUntouched(t, target)
}

// Rotating a vmhost.log that is a symlink neither copies its target into
// vmhost.log.1 nor truncates the target.
func TestCopyTruncateRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := plant(t, dir, "vmhost.log")
	if err := CopyTruncate(filepath.Join(dir, "vmhost.log"), 3); err == nil {
		t.Error("CopyTruncate through a symlink succeeded")
	}
	checkUntouched(t, target)
	if _, err := os.Stat(filepath.Join(dir, "vmhost.log.1")); err == nil {
		t.Error("the link's target was copied into vmhost.log.1")
	}
}

package layout

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mbvm/mb/internal/testenv"
)

func TestEnsureDirCreatesPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "home")
	if err := EnsureDir(dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("created %v, %v; want mode 0700", fi, err)
	}
	// Group-readable is fine: only writes by others are a danger.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := EnsureDir(dir); err != nil {
		t.Errorf("a 0755 directory of one's own: %v", err)
	}
}

// A state directory others may write into is refused, not chmodded: the
// files in it may already be planted.
func TestEnsureDirRefusesWritableByOthers(t *testing.T) {
	for _, mode := range []os.FileMode{0o777, 0o770, 0o702} {
		dir := filepath.Join(t.TempDir(), "home")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		err := EnsureHome(dir)
		if !errors.Is(err, ErrInsecure) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "chmod 700") {
			t.Errorf("mode %04o: err = %v, want ErrInsecure naming %s and the fix", mode, err, dir)
		}
		if fi, _ := os.Stat(dir); fi.Mode().Perm() != mode {
			t.Errorf("mode %04o was changed to %04o", mode, fi.Mode().Perm())
		}
	}
}

// The reproduction of issue 10, item 2: a directory another user made.
func TestEnsureDirRefusesOtherOwner(t *testing.T) {
	testenv.Root(t, "giving a directory to another user")
	dir := filepath.Join(t.TempDir(), "evil")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	for _, f := range []func(string) error{EnsureHome, EnsureDir, CheckDir} {
		err := f(dir)
		if !errors.Is(err, ErrInsecure) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "uid 65534") {
			t.Errorf("err = %v, want ErrInsecure naming %s and its owner", err, dir)
		}
	}
	// A symlinked $MB_HOME owned by another user is refused too.
	link := filepath.Join(t.TempDir(), "home")
	mine := t.TempDir()
	if err := os.Symlink(mine, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := EnsureHome(link); !errors.Is(err, ErrInsecure) {
		t.Errorf("another user's link as $MB_HOME: err = %v, want ErrInsecure", err)
	}
}

func TestEnsureDirRefusesSymlinks(t *testing.T) {
	home := t.TempDir()
	elsewhere := t.TempDir()
	vms := filepath.Join(home, "vms")
	if err := os.Symlink(elsewhere, vms); err != nil {
		t.Fatal(err)
	}
	if err := EnsureDir(vms); !errors.Is(err, ErrInsecure) || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("a symlinked directory under $MB_HOME: err = %v, want ErrInsecure naming the link", err)
	}
	dangling := filepath.Join(home, "images")
	if err := os.Symlink(filepath.Join(elsewhere, "nope"), dangling); err != nil {
		t.Fatal(err)
	}
	if err := EnsureDir(dangling); !errors.Is(err, ErrInsecure) {
		t.Errorf("a dangling link: err = %v, want ErrInsecure", err)
	}
	if _, err := os.Stat(filepath.Join(elsewhere, "nope")); err == nil {
		t.Error("EnsureDir created the link's target")
	}
	// $MB_HOME itself may be the user's own link (~/.mb on a larger disk).
	link := filepath.Join(t.TempDir(), "mb")
	if err := os.Symlink(elsewhere, link); err != nil {
		t.Fatal(err)
	}
	if err := EnsureHome(link); err != nil {
		t.Errorf("the user's own symlinked $MB_HOME: %v", err)
	}
}

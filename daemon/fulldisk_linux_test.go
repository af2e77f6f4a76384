package daemon

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/internal/testenv"
)

// With $MB_HOME full, stop, forced stop and forced removal still bring the
// VMs down (each failed on writing the user-stopped marker first, leaving
// the VM running), and the stop holds: no restart policy brings them back.
func TestStopOnFullDisk(t *testing.T) {
	testenv.Root(t, "mounting a tmpfs")
	home, err := os.MkdirTemp("/tmp", "mbd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", home).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs on %s: %v: %s", home, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", home).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", home, err, out)
			_ = exec.Command("umount", "-l", home).Run()
		}
	})
	td := startTestDaemon(t, home, nil)
	ctx := stepCtx(t)
	for _, n := range []string{"f1", "f2", "f3"} {
		if _, err := td.c.Create(ctx, []byte("name: "+n+"\nbackend: fake\nrestart: always\n")); err != nil {
			t.Fatal(err)
		}
		if _, err := td.c.Start(ctx, n, 0); err != nil {
			t.Fatal(err)
		}
	}
	fill(t, filepath.Join(home, "filler"))

	if _, err := td.c.Stop(ctx, "f1", 0, false); err != nil {
		t.Errorf("mb stop on a full disk: %v", err)
	}
	if _, err := td.c.Stop(ctx, "f2", 0, true); err != nil {
		t.Errorf("mb stop --force on a full disk: %v", err)
	}
	if err := td.c.Delete(ctx, "f3", true); err != nil {
		t.Errorf("mb rm --force on a full disk: %v", err)
	}
	for _, n := range []string{"f1", "f2"} {
		v, err := td.c.Inspect(ctx, n)
		if err != nil || v.State != api.StateStopped || v.PID != 0 || !v.UserStopped {
			t.Errorf("%s after its stop on a full disk: %+v, %v; want stopped by the user", n, v, err)
		}
	}
	if _, err := td.c.Inspect(ctx, "f3"); !api.IsNotFound(err) {
		t.Errorf("f3 after mb rm --force on a full disk: %v; want it gone", err)
	}
}

// fill writes p until the filesystem is full.
func fill(t *testing.T, p string) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, size := range []int{64 << 10, 512, 1} {
		buf := make([]byte, size)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("fill %s: %v", p, err)
				}
				break
			}
		}
	}
}

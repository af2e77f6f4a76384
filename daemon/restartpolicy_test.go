package daemon

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mbvm/mb/bench/procfs"
	"github.com/mbvm/mb/daemon/api"
)

// An on-failure VM whose vmhost crashed while no daemon ran is restarted
// by the next daemon (it stayed crashed).
func TestOnFailureCrashedWhileDaemonDown(t *testing.T) {
	home, err := os.MkdirTemp("/tmp", "mbd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	td := startTestDaemon(t, home, nil)
	ctx := stepCtx(t)
	if _, err := td.c.Create(ctx, []byte("name: of\nbackend: fake\nrestart: on-failure\n")); err != nil {
		t.Fatal(err)
	}
	v, err := td.c.Start(ctx, "of", 0)
	if err != nil {
		t.Fatal(err)
	}
	td.exit()
	if err := syscall.Kill(v.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, v.PID)
	td2 := startTestDaemon(t, home, nil)
	got := waitVM(t, td2.c, "of", func(w *api.VM) bool {
		return w.State == api.StateRunning && w.PID != 0 && w.PID != v.PID || w.State == api.StateCrashed && w.PID == 0 && w.Reason != ""
	})
	// Crashed without a restart pending would stay so; give the restart
	// the time it takes if the first poll saw the crash.
	if got.State != api.StateRunning {
		got = waitVM(t, td2.c, "of", func(w *api.VM) bool { return w.State == api.StateRunning && w.PID != v.PID })
	}
	if got.Restarts != 1 {
		t.Errorf("restarts = %d, want 1", got.Restarts)
	}
}

// A user's start resets the restart history: a VM that reached the limit
// and was started by hand is restarted on its next crash.
func TestUserStartResetsRestartLimit(t *testing.T) {
	td := startTestDaemon(t, "", func(c *Config) { c.Restart.Limit, c.Restart.Window = 1, time.Hour })
	ctx := stepCtx(t)
	if _, err := td.c.Create(ctx, []byte("name: rl\nbackend: fake\nrestart: on-failure\n")); err != nil {
		t.Fatal(err)
	}
	v, err := td.c.Start(ctx, "rl", 0)
	if err != nil {
		t.Fatal(err)
	}
	crash := func(pid int) {
		t.Helper()
		if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil { // the fake VM crashes
			t.Fatal(err)
		}
	}
	crash(v.PID)
	v = waitVM(t, td.c, "rl", func(w *api.VM) bool { return w.State == api.StateRunning && w.PID != v.PID && w.PID != 0 })
	crash(v.PID)
	waitVM(t, td.c, "rl", func(w *api.VM) bool { return w.State == api.StateCrashed && w.PID == 0 })
	// Started by hand, then crashing: restarted.
	if v, err = td.c.Start(ctx, "rl", 0); err != nil {
		t.Fatal(err)
	}
	crash(v.PID)
	waitVM(t, td.c, "rl", func(w *api.VM) bool {
		if w.State == api.StateCrashed && w.PID == 0 && strings.Contains(w.Reason, "restart limit") {
			t.Fatalf("not restarted after the user's start: %s", w.Reason)
		}
		return w.State == api.StateRunning && w.PID != v.PID && w.PID != 0
	})
}

// A restart: always VM started at daemon start is started by the policy,
// not by the user: a user's stop that came first holds and its marker
// stays (the start cleared it and started the VM).
func TestBootStartKeepsUserStop(t *testing.T) {
	td := startTestDaemon(t, "", nil)
	ctx := stepCtx(t)
	if _, err := td.c.Create(ctx, []byte("name: al\nbackend: fake\nrestart: always\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := td.c.Stop(ctx, "al", 0, false); err != nil {
		t.Fatal(err)
	}
	v := td.d.lookup("al")
	td.d.bootStart(v)
	if !v.userStopped() {
		t.Error("the start at daemon start cleared the user's stop")
	}
	if _, err := os.Stat(v.file(UserStoppedName)); err != nil {
		t.Errorf("marker: %v", err)
	}
	if got, err := td.c.Inspect(ctx, "al"); err != nil || got.State != api.StateStopped {
		t.Errorf("after the start at daemon start: %+v, %v; want it stopped", got, err)
	}
}

// waitGone waits until pid no longer runs.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for procfs.Alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("PID %d still runs", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

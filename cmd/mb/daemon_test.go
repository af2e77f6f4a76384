package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mbvm/mb/daemon/api"
)

// kill -9 of the daemon never stops a VM; the next mb ls auto-starts a new
// daemon, which re-adopts the running VMs and still manages them.
func TestDaemonKill9ReadoptsFake(t *testing.T) {
	e := newEnv(t)
	e.ok("start", "r1", "--backend", "fake")
	e.ok("start", "r2", "--backend", "fake")
	pids := map[string]int{"r1": e.vm("r1").PID, "r2": e.vm("r2").PID}
	old := e.daemonPID()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.eventually("the daemon to die", func() bool { return !alive(old) })
	for n, pid := range pids {
		if !alive(pid) {
			t.Fatalf("vmhost of %s (PID %d) died with the daemon", n, pid)
		}
	}
	vms := e.list()
	if e.daemonPID() == old {
		t.Fatal("no new daemon was started")
	}
	for n, pid := range pids {
		v := findVM(vms, n)
		if v == nil || v.State != api.StateRunning || v.PID != pid {
			t.Errorf("%s after re-adoption: %+v, want running with vmhost PID %d", n, v, pid)
		}
	}
	adopted := 0
	for _, ev := range e.events() {
		if ev.Type == api.EventAdopted {
			adopted++
		}
	}
	if adopted != 2 {
		t.Errorf("%d adopted events, want 2", adopted)
	}
	// The new daemon watches the adopted vmhosts: a stop and a crash are
	// both seen.
	e.ok("stop", "r1")
	if v := e.vm("r1"); v.State != api.StateStopped {
		t.Errorf("r1 after stop: %+v", v)
	}
	_ = syscall.Kill(pids["r2"], syscall.SIGKILL)
	e.eventually("r2 to show as crashed", func() bool { return e.vm("r2").State == api.StateCrashed })
}

// mb daemon stop leaves VMs running; --stop-vms stops them.
func TestDaemonStop(t *testing.T) {
	e := newEnv(t)
	e.ok("start", "d", "--backend", "fake")
	pid := e.vm("d").PID
	e.ok("daemon", "stop")
	if !alive(pid) {
		t.Fatal("mb daemon stop killed the VM")
	}
	if out := e.mb("daemon", "status"); out.code != 1 || !strings.Contains(out.stdout, "not running") {
		t.Errorf("mb daemon status after stop: %s", out)
	}
	if v := e.vm("d"); v.State != api.StateRunning || v.PID != pid {
		t.Errorf("after a daemon restart: %+v", v)
	}
	if out := e.ok("daemon", "status"); !strings.Contains(out, "running") {
		t.Errorf("mb daemon status = %q", out)
	}
	// SIGTERM (what systemd sends) also leaves the VMs running.
	dpid := e.daemonPID()
	if err := syscall.Kill(dpid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	e.eventually("the daemon to exit on SIGTERM", func() bool { return !alive(dpid) })
	if !alive(pid) {
		t.Fatal("SIGTERM to the daemon killed the VM")
	}
	if _, err := os.Stat(filepath.Join(e.home, "mb.sock")); !os.IsNotExist(err) {
		t.Errorf("mb.sock left behind after SIGTERM: %v", err)
	}
	e.ok("daemon", "stop", "--stop-vms") // auto-starts nothing: no daemon runs
	if v := e.vm("d"); v.State != api.StateRunning || v.PID != pid {
		t.Errorf("after SIGTERM and a new daemon: %+v", v)
	}
	e.ok("daemon", "stop", "--stop-vms")
	e.eventually("the VM to stop with the daemon", func() bool { return !alive(pid) })
}

// A second daemon exits at once with a clear message.
func TestSecondDaemonRefused(t *testing.T) {
	e := newEnv(t)
	e.ok("daemon")
	first := e.daemonPID()
	r := e.mb("daemon", "--foreground")
	if r.code != 1 || !strings.Contains(r.stderr, "already running") {
		t.Errorf("second daemon: %s; want exit 1 saying one is already running", r)
	}
	if e.daemonPID() != first || !alive(first) {
		t.Error("the second daemon disturbed the first")
	}
	if out := e.ok("daemon"); !strings.Contains(out, "already running") {
		t.Errorf("mb daemon with one running printed %q", out)
	}
}

// An auto-started daemon does not hold the caller's stdout: $(mb ls)
// returns at once instead of waiting for the daemon to exit.
func TestAutoStartedDaemonIsDetached(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := e.command(ctx, "ls", "-q")
	cmd.WaitDelay = time.Second // fail fast if a child keeps the pipe open
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("$(mb ls -q): %v (%q)", err, out)
	}
	pid := e.daemonPID()
	if pid <= 0 || !alive(pid) {
		t.Fatal("no daemon after mb ls")
	}
	// In its own session, not the caller's.
	sid, err := getsid(pid)
	if err != nil || sid != pid {
		t.Errorf("daemon session %d (%v), want its own (%d)", sid, err, pid)
	}
	for _, fd := range []string{"0", "1", "2"} {
		target, err := os.Readlink(filepath.Join("/proc", itoa(pid), "fd", fd))
		if err != nil || target != "/dev/null" {
			t.Errorf("daemon fd %s -> %q (%v), want /dev/null", fd, target, err)
		}
	}
}

func getsid(pid int) (int, error) {
	sid, _, errno := syscall.RawSyscall(syscall.SYS_GETSID, uintptr(pid), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(sid), nil
}

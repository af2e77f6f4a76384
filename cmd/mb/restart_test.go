package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mbvm/mb/daemon/api"
)

// A fake VM told to crash, with restart: on-failure, comes back, and the
// events show the crash and the restart.
func TestCrashRestartsOnFailure(t *testing.T) {
	e := newEnv(t)
	e.ok("start", "c", "--backend", "fake", "--restart", "on-failure")
	first := e.vm("c").PID
	if err := syscall.Kill(first, syscall.SIGUSR1); err != nil { // the fake VM crashes
		t.Fatal(err)
	}
	e.eventually("the VM to come back", func() bool {
		v := e.vm("c")
		return v.State == api.StateRunning && v.PID != first && v.Restarts == 1
	})
	var crashed, restarting bool
	for _, ev := range e.events() {
		if ev.VM != "c" {
			continue
		}
		crashed = crashed || ev.Type == api.EventCrashed
		restarting = restarting || (ev.Type == api.EventRestarting && ev.Restarts == 1)
	}
	if !crashed || !restarting {
		t.Errorf("events lack the crash (%v) or the restart (%v): %+v", crashed, restarting, e.events())
	}
	if pids := e.vmhostPIDs("c"); len(pids) != 1 {
		t.Errorf("vmhosts for c after the restart: %v, want one", pids)
	}
}

// kill -9 of a vmhost is a crash (no exit record); with restart no the VM
// stays crashed, with its reason.
func TestVMHostKilledIsCrash(t *testing.T) {
	e := newEnv(t)
	e.ok("start", "k", "--backend", "fake")
	pid := e.vm("k").PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.eventually("the VM to show as crashed", func() bool { return e.vm("k").State == api.StateCrashed })
	v := e.vm("k")
	if !strings.Contains(v.Reason, "killed") {
		t.Errorf("reason %q, want it to say vmhost was killed", v.Reason)
	}
	if v.Restarts != 0 {
		t.Errorf("restarts = %d under restart no", v.Restarts)
	}
	out := e.ok("ls")
	if !strings.Contains(out, "crashed") {
		t.Errorf("mb ls does not show the crash:\n%s", out)
	}
}

// A VM the user stopped is never restarted, even under always.
func TestUserStopNeverRestarts(t *testing.T) {
	e := newEnv(t)
	e.ok("start", "u", "--backend", "fake", "--restart", "always")
	pid := e.vm("u").PID
	e.ok("stop", "u")
	e.eventually("the vmhost to exit", func() bool { return !alive(pid) })
	// Give a wrong restart a chance to happen (the backoff starts at 1 s).
	time.Sleep(3 * time.Second)
	if v := e.vm("u"); v.State != api.StateStopped || v.Restarts != 0 {
		t.Errorf("after a user stop under always: %+v", v)
	}
	for _, ev := range e.events() {
		if ev.Type == api.EventRestarting {
			t.Errorf("restart event after a user stop: %+v", ev)
		}
	}
	// A new daemon does not start it either.
	_ = syscall.Kill(e.daemonPID(), syscall.SIGKILL)
	if v := findVM(e.list(), "u"); v == nil || v.State != api.StateStopped {
		t.Errorf("after a daemon restart: %+v, want stopped", v)
	}
	if pids := e.vmhostPIDs("u"); len(pids) != 0 {
		t.Errorf("a new daemon started the user-stopped VM: vmhosts %v", pids)
	}
}

// A restart=always VM whose vmhost died while the daemon was down is
// started by the next daemon (this is how VMs come back after a reboot).
func TestAlwaysVMStartedByNewDaemon(t *testing.T) {
	e := newEnv(t)
	e.ok("start", "a", "--backend", "fake", "--restart", "always")
	pid := e.vm("a").PID
	_ = syscall.Kill(e.daemonPID(), syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	e.eventually("the vmhost to die", func() bool { return !alive(pid) })
	e.ok("ls") // auto-starts a new daemon
	e.eventually("the VM to be started again", func() bool {
		v := findVM(e.list(), "a")
		return v != nil && v.State == api.StateRunning && v.PID != pid
	})
}

// Editing spec.yaml while the VM is stopped takes effect at the next
// start; a broken edit is refused with the file named.
func TestSpecEditWhileStopped(t *testing.T) {
	e := newEnv(t)
	e.ok("start", "ed", "--backend", "fake")
	e.ok("stop", "ed")
	path := filepath.Join(e.home, "vms", "ed", "spec.yaml")
	if err := os.WriteFile(path, []byte("name: ed\nbackend: fake\ncpus: 2\nrestart: on-failure\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.ok("start", "ed")
	if v := e.vm("ed"); v.CPUs != 2 || v.Restart != "on-failure" {
		t.Errorf("after editing spec.yaml: cpus %d restart %q, want 2 and on-failure", v.CPUs, v.Restart)
	}
	e.ok("stop", "ed")
	if err := os.WriteFile(path, []byte("name: ed\ncpus: lots\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := e.mb("start", "ed"); r.code != 1 || !strings.Contains(r.stderr, "spec.yaml") {
		t.Errorf("start with a broken spec.yaml: %s; want exit 1 naming the file", r)
	}
}

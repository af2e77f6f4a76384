package main

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/mbvm/mb/daemon/api"
)

// TestStopOfAFrozenVMHostWithinTimeout: with the VM's vmhost frozen
// (SIGSTOP), `mb stop --timeout 5s` still ends within 5 s: the daemon
// kills the vmhost that does not answer instead of waiting out a
// force_stop too, and the VM the user stopped is stopped, not crashed.
func TestStopOfAFrozenVMHostWithinTimeout(t *testing.T) {
	e := newEnv(t)
	e.extraEnv = append(e.extraEnv, "MB_FAKE_STOP_DELAY=1h")
	e.ok("start", "frozen", "--backend", "fake")
	pids := e.vmhostPIDs("frozen")
	if len(pids) != 1 {
		t.Fatalf("vmhost PIDs of frozen: %v, want one", pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pids[0], syscall.SIGCONT)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := e.command(ctx, "stop", "--timeout", "5s", "frozen").CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("mb stop --timeout 5s of a frozen vmhost did not end within 5 s: %s", out)
	}
	if err != nil {
		t.Fatalf("mb stop: %v: %s", err, out)
	}
	if v := e.vm("frozen"); v.State != api.StateStopped {
		t.Errorf("after stopping a frozen vmhost: %+v, want stopped", v)
	}
}

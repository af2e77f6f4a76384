package failtest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/bench/rig"
	"github.com/mbvm/mb/vmhost"
)

// The daemon is killed with SIGKILL in the middle of an operation: while a
// VM boots, while one stops, and while one is being removed. The fake
// backend's start and stop delays hold each operation open long enough to
// be interrupted. Nothing is lost: the booting VM is re-adopted (never
// started twice), the stop still counts as the user's (a restart: always
// VM stays down), the half-removed VM can be removed or started again, and
// no vmhost is left behind.
func TestDaemonKilledMidOperation(t *testing.T) {
	h := newHome(t)
	mb, d := mbFor(t, h, "MB_FAKE_START_DELAY=3s", "MB_FAKE_STOP_DELAY=3s")

	// 1. Mid-start.
	startDone := make(chan error, 1)
	go func() {
		_, err := mb.Run(ctxFor(t, cmdTimeout), "start", "m1", "-f", fakeSpec(t, mb, "m1", "always"))
		startDone <- err
	}()
	pidPath := filepath.Join(mb.VMDir("m1"), vmhost.PIDName)
	waitFile(t, pidPath)
	pid := vmhostPID(t, mb.VMDir("m1"))
	d.Kill()
	checkGoneError(t, "mb start", <-startDone)
	d = startDaemon(t, mb)
	run(t, mb, "start", "m1")
	v := waitState(t, mb, "m1", time.Minute, "running")
	if v.PID != pid {
		t.Errorf("after the daemon died mid-start, m1 runs under vmhost %d, want the re-adopted %d", v.PID, pid)
	}
	if p := processes(t, h); len(p.VMHosts) != 1 {
		t.Errorf("after mid-start: %s, want one vmhost", p)
	}

	// 2. Mid-stop of a restart: always VM.
	stopDone := make(chan error, 1)
	go func() {
		_, err := mb.Run(ctxFor(t, cmdTimeout), "stop", "m1")
		stopDone <- err
	}()
	waitVMHostState(t, mb.VMDir("m1"), vmhost.StateStopping)
	d.Kill()
	checkGoneError(t, "mb stop", <-stopDone)
	d = startDaemon(t, mb)
	waitProcesses(t, h, 0, 0, time.Minute)
	if v := waitState(t, mb, "m1", time.Minute, "stopped"); v.Restarts != 0 {
		t.Errorf("m1 after the daemon died mid-stop: %+v", v)
	}
	// Give a wrong restart under always a chance (the backoff starts at 1 s).
	time.Sleep(3 * time.Second)
	if v, err := mb.Get(ctxFor(t, time.Minute), "m1"); err != nil || v.State != "stopped" {
		t.Errorf("the user's stop was forgotten: m1 is %+v (%v)", v, err)
	}
	if p := processes(t, h); len(p.VMHosts) != 0 {
		t.Errorf("a vmhost runs after the user's stop: %s", p)
	}

	// 3. Mid-remove of a running VM.
	run(t, mb, "start", "m2", "-f", fakeSpec(t, mb, "m2", "no"))
	before := snapshot(t, h)
	rmDone := make(chan error, 1)
	go func() {
		_, err := mb.Run(ctxFor(t, cmdTimeout), "rm", "--force", "m2")
		rmDone <- err
	}()
	waitVMHostState(t, mb.VMDir("m2"), vmhost.StateStopping)
	d.Kill()
	checkGoneError(t, "mb rm", <-rmDone)
	startDaemon(t, mb)
	waitProcesses(t, h, 0, 0, time.Minute)
	if _, err := mb.Get(ctxFor(t, time.Minute), "m2"); err == nil {
		// Still listed: its files are whole, and it can be removed now.
		t.Log("m2 survived the interrupted rm; removing it again")
		if _, err := os.Stat(filepath.Join(mb.VMDir("m2"), "spec.yaml")); err != nil {
			t.Errorf("m2 is listed but its spec is gone: %v", err)
		}
		checkIntact(t, h, before)
		run(t, mb, "rm", "m2")
	}
	if _, err := os.Stat(mb.VMDir("m2")); !os.IsNotExist(err) {
		t.Errorf("m2's directory after rm: %v", err)
	}
	// The name is free again, and m1 starts where it was.
	run(t, mb, "start", "m2", "-f", fakeSpec(t, mb, "m2", "no"))
	run(t, mb, "start", "m1")
	for _, n := range []string{"m1", "m2"} {
		if err := answersStatus(mb.VMDir(n), vmhost.StateRunning); err != nil {
			t.Error(err)
		}
	}
	run(t, mb, "stop", "m1", "m2")
	waitProcesses(t, h, 0, 0, time.Minute)
}

// checkGoneError checks that a command whose daemon was killed under it
// failed with an error that says so and what to do.
func checkGoneError(t *testing.T, what string, err error) {
	t.Helper()
	var ce *rig.CommandError
	if !errors.As(err, &ce) {
		t.Errorf("%s while its daemon was killed: %v, want a failure", what, err)
		return
	}
	msg := strings.TrimSpace(ce.Stderr)
	if ce.ExitCode != 1 || !strings.Contains(msg, "went away") || !strings.Contains(msg, "mb ls") || strings.Contains(msg, "\n") {
		t.Errorf("%s while its daemon was killed: exit code %d, stderr %q; want exit code 1 and one line saying the daemon went away and to check with mb ls", what, ce.ExitCode, msg)
	}
}

// waitFile polls until path exists.
func waitFile(t *testing.T, path string) {
	t.Helper()
	err := rig.Poll(ctxFor(t, time.Minute), 20*time.Millisecond, path+" to appear", func() (bool, error) {
		_, err := os.Stat(path)
		return err == nil, err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitVMHostState polls the vmhost in dir until it reports state.
func waitVMHostState(t *testing.T, dir, state string) {
	t.Helper()
	err := rig.Poll(ctxFor(t, time.Minute), 20*time.Millisecond, "vmhost in "+dir+" to be "+state, func() (bool, error) {
		err := answersStatus(dir, state)
		return err == nil, err
	})
	if err != nil {
		t.Fatal(err)
	}
}

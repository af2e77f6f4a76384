package failtest

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/mbvm/mb/bench/procfs"
	"github.com/mbvm/mb/bench/rig"
	"github.com/mbvm/mb/vmhost"
)

// TestVMHostKill9Standalone kills a stand-alone fake vmhost with SIGKILL:
// it leaves its socket and PID file behind but no exit record (that
// absence is how a daemon learns vmhost itself died), and the stale files
// do not stop the next vmhost on the same directory.
func TestVMHostKill9Standalone(t *testing.T) {
	bin := needVMHost(t)
	h := newHome(t)
	dir := filepath.Join(h, "vms", "k1")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "spec.yaml"), []byte("name: k1\nbackend: fake\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, h)
	v, err := rig.StartVMHost(ctxFor(t, time.Minute), bin, dir, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Kill)
	if err := syscall.Kill(v.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-v.Done()
	if _, err := os.Stat(filepath.Join(dir, "vmhost.sock")); err != nil {
		t.Errorf("the killed vmhost's socket should be left behind for this test to mean anything: %v", err)
	}
	if _, err := vmhost.ReadExitRecord(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a vmhost killed with SIGKILL wrote an exit record (or the read failed otherwise): %v", err)
	}
	if got := processes(t, h); got.Total() != 0 {
		t.Errorf("processes after the kill: %s", got)
	}
	if vmhost.NewClient(filepath.Join(dir, "vmhost.sock")).IsAlive() {
		t.Error("a dead vmhost's stale socket answers")
	}

	// The stale socket and PID file must not block the next start.
	v2, err := rig.StartVMHost(ctxFor(t, time.Minute), bin, dir, h, nil)
	if err != nil {
		t.Fatalf("restart over stale files: %v", err)
	}
	t.Cleanup(v2.Kill)
	if err := answersStatus(dir, vmhost.StateRunning); err != nil {
		t.Error(err)
	}
	if pid := vmhostPID(t, dir); pid != v2.PID() {
		t.Errorf("vmhost.pid says %d, the new vmhost is %d", pid, v2.PID())
	}
	if err := v2.Stop(ctxFor(t, time.Minute), vmhost.ModeGraceful); err != nil {
		t.Fatal(err)
	}
	rec, err := vmhost.ReadExitRecord(dir)
	if err != nil || rec.Crashed || rec.ExitCode != 0 {
		t.Errorf("exit record after a clean stop = %+v, %v", rec, err)
	}
	if v2.ExitCode() != 0 {
		t.Errorf("vmhost exit code %d after a clean stop", v2.ExitCode())
	}
	if s := sockets(dir); len(s) != 0 {
		t.Errorf("sockets left after a clean stop: %v", s)
	}
	checkIntact(t, h, before)
}

// TestVMHostCrashStandalone makes a fake VM crash (SIGUSR1): vmhost
// reports it in exit.json and exits non-zero.
func TestVMHostCrashStandalone(t *testing.T) {
	bin := needVMHost(t)
	h := newHome(t)
	dir := filepath.Join(h, "vms", "c1")
	v, err := rig.StartVMHost(ctxFor(t, time.Minute), bin, dir, h, nil, "--backend", "fake")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Kill)
	if err := syscall.Kill(v.PID(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-v.Done():
	case <-ctxFor(t, time.Minute).Done():
		t.Fatal("vmhost did not exit after its VM crashed")
	}
	if v.ExitCode() != 1 {
		t.Errorf("vmhost exit code %d after a crash, want 1", v.ExitCode())
	}
	rec, err := vmhost.ReadExitRecord(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !rec.Crashed || rec.Reason == "" || rec.ExitCode != 1 || rec.PID != v.PID() {
		t.Errorf("exit record = %+v, want a crash with a reason from PID %d", rec, v.PID())
	}
	if procfs.Alive(v.PID()) {
		t.Error("vmhost still alive")
	}
}

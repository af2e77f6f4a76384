package qemu

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/vmhost"
)

// serveVM serves vm on a vmhost socket in a new directory until the test
// ends, and returns the socket.
func serveVM(t *testing.T, vm *Controller) string {
	t.Helper()
	sock := filepath.Join(vmDir(t), layout.VMHostSocket)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = vmhost.NewServer(sock, "", vm, nil).Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	cl := vmhost.NewClient(sock)
	for deadline := time.Now().Add(10 * time.Second); !cl.IsAlive(); {
		if time.Now().After(deadline) {
			t.Fatal("vmhost server did not come up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return sock
}

// TestStopWithinBudgetKillsAFrozenQEMU: a guest without ACPI whose QEMU is
// frozen (SIGSTOP) ignores every phase before SIGKILL, QMP quit included.
// vmhost's stop still answers within the stop's timeout, to a client whose
// deadline is that timeout, with the VM stopped by kill; a kill the user
// asked for is a clean stop.
func TestStopWithinBudgetKillsAFrozenQEMU(t *testing.T) {
	img := miniImage(t)
	vmSlot(t)
	vm := startVM(t, vmOptions(t, img, "qtest-budget", "acpi=off"))
	waitSerial(t, vm, img.readyLine())
	sock := serveVM(t, vm)
	pid := vm.PID()
	if err := unix.Kill(pid, unix.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer unix.Kill(pid, unix.SIGCONT)

	const secs = 6
	ctx, cancel := context.WithTimeout(context.Background(), secs*time.Second)
	defer cancel()
	r, err := vmhost.NewClient(sock).Call(ctx, vmhost.Request{Method: vmhost.MethodStop, TimeoutSeconds: secs})
	if errors.Is(err, vmhost.ErrNoAnswer) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stop with timeout_seconds %d got no answer within %d s: %v", secs, secs, err)
	}
	if err != nil || r.StoppedBy != vmhost.ModeKill || r.State != vmhost.StateStopped {
		t.Fatalf("stop of a frozen QEMU = %+v, %v; want stopped by kill", r, err)
	}
	if err := waitExit(t, vm); err != nil || !processGone(pid) {
		t.Errorf("after the stop: Wait %v (want nil: the user asked for it), pid %d gone %v", err, pid, processGone(pid))
	}
}

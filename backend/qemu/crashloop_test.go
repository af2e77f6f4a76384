package qemu

import (
	"log/slog"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/go-qemu/qmp"

	"github.com/mbvm/mb/vmhost"
)

// TestCrashLoopCounting: only resets in quick succession are a crash loop;
// resets spread out, or asked for by the host, are not.
func TestCrashLoopCounting(t *testing.T) {
	newCtl := func(t *testing.T) (*Controller, *exec.Cmd) {
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return &Controller{log: slog.New(slog.DiscardHandler), cfg: &bootConfig{Dir: t.TempDir()}, cmd: cmd,
			state: vmhost.StateRunning, exited: make(chan struct{})}, cmd
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	c, _ := newCtl(t)
	for i := 0; i < 10; i++ { // one every 20 s: at most 3 in any minute
		c.noteResetLocked(t0.Add(time.Duration(i) * 20 * time.Second))
	}
	if c.crashLoop != "" {
		t.Errorf("resets 20 s apart were taken for a crash loop: %s", c.crashLoop)
	}

	c, _ = newCtl(t)
	for i := 0; i < 20; i++ {
		c.onEvent(qmp.Event{Event: "RESET", Data: map[string]any{"guest": false, "reason": "host-qmp-system-reset"}})
	}
	if c.crashLoop != "" {
		t.Errorf("host-requested resets were taken for a crash loop: %s", c.crashLoop)
	}

	c, cmd := newCtl(t)
	for i := 0; i < crashLoopResets; i++ {
		c.onEvent(qmp.Event{Event: "RESET", Data: map[string]any{"guest": true, "reason": "guest-reset"}})
	}
	if !strings.Contains(c.crashLoop, "crash loop") || c.State() != vmhost.StateError {
		t.Fatalf("%d guest resets at once: crashLoop %q, state %s; want a crash loop", crashLoopResets, c.crashLoop, c.State())
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the process was not killed after a crash loop")
	}
}

// TestCrashLoopEndsTheVM: a kernel that panics before pvpanic loads, with
// panic=1, makes QEMU reset the guest over and over; the backend ends the
// VM as crashed, naming the crash loop, instead of letting it spin.
func TestCrashLoopEndsTheVM(t *testing.T) {
	img := miniImage(t)
	vmSlot(t)
	vm := startVM(t, vmOptions(t, img, "qtest-loop", "console=ttyS0 panic=1 rdinit=/nonexistent"))
	err := waitExit(t, vm)
	if err == nil || !strings.Contains(err.Error(), "crash loop") || !strings.Contains(err.Error(), "guest reset") {
		t.Fatalf("Wait = %v, want a crash naming the crash loop; serial log tail:\n%s", err, serialTail(vm))
	}
	if s := vm.State(); s != vmhost.StateError {
		t.Errorf("state = %q, want error", s)
	}
}

package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mbvm/mb/bench/testvm"

	"golang.org/x/sys/unix"

	"github.com/mbvm/mb/vm/image"
	"github.com/mbvm/mb/vm/spec"
)

// Generous deadlines: a busy 2-core machine under TCG must not turn a
// correct test red. Speed is measured elsewhere, never asserted here.
const (
	bootDeadline = 120 * time.Second
	stopDeadline = 90 * time.Second
)

// serialPoll is how often serial.log is read while waiting for a line.
const serialPoll = 10 * time.Millisecond

// defaultReadyLine is what the mini image prints once its agent is up.
const defaultReadyLine = "mb-agent: ready"

// testImage is the mini image the VM tests boot.
type testImage struct {
	home     string
	manifest *image.Manifest
}

func (i testImage) readyLine() string {
	if i.manifest.ReadyLine != "" {
		return i.manifest.ReadyLine
	}
	return defaultReadyLine
}

// miniImage finds the mini image under $MB_HOME (or ~/.mb). Without it the
// test is skipped, or fails when MB_REQUIRE_VM=1.
func miniImage(t testing.TB) testImage {
	t.Helper()
	h, m := testvm.Image(t, "mini")
	return testImage{home: h, manifest: m}
}

// vmSlot takes the machine-wide VM test lock (testvm.Slot).
func vmSlot(t testing.TB) { testvm.Slot(t) }

// vmDir makes a short VM directory (socket paths must stay under 104 bytes,
// which t.TempDir's long names can break).
func vmDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mbq-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// testLogger sends the backend's logs to the test output until the test
// ends; later lines (from goroutines still winding down) are dropped.
func testLogger(t testing.TB) *slog.Logger {
	w := &closingWriter{w: t.Output()}
	t.Cleanup(w.close)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type closingWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (c *closingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return len(p), nil
	}
	return c.w.Write(p)
}

func (c *closingWriter) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
}

// vmOptions are Start options booting the mini image in a fresh directory.
func vmOptions(t testing.TB, img testImage, name, extraCmdline string) Options {
	return Options{
		Dir:    vmDir(t),
		Home:   img.home,
		Logger: testLogger(t),
		Spec: &spec.Spec{
			Name:    name,
			Image:   "mini",
			Cmdline: extraCmdline,
			Memory:  256 << 20,
			Accel:   spec.AccelAuto,
		},
	}
}

// startVM starts a VM and makes sure it is gone when the test ends.
func startVM(t testing.TB, opts Options) *Controller {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootDeadline)
	defer cancel()
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stopDeadline)
		defer cancel()
		if err := c.ForceStop(ctx); err != nil {
			t.Errorf("cleanup: force stop: %v", err)
		}
		_ = c.Wait()
	})
	return c
}

// waitSerial waits until serial.log contains line.
func waitSerial(t testing.TB, c *Controller, line string) {
	t.Helper()
	path := c.cfg.path(serialLogName)
	deadline := time.Now().Add(bootDeadline)
	for {
		data, _ := os.ReadFile(path)
		if bytes.Contains(data, []byte(line)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q not in %s after %s; state %s; log tail:\n%s", line, path, bootDeadline, c.State(), tail(data, 2000))
		}
		if c.isExited() {
			t.Fatalf("qemu exited (%v) before %q appeared in %s; log tail:\n%s", c.Wait(), line, path, tail(data, 2000))
		}
		time.Sleep(serialPoll)
	}
}

// waitExit waits for the VM to exit and returns Wait's result.
func waitExit(t testing.TB, c *Controller) error {
	t.Helper()
	select {
	case <-c.exited:
		return c.Wait()
	case <-time.After(stopDeadline):
		t.Fatalf("qemu (pid %d) still running after %s; state %s", c.PID(), stopDeadline, c.State())
		return nil
	}
}

// processGone reports whether pid no longer runs (gone or a zombie).
func processGone(pid int) bool {
	if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	// The state follows the command name in parentheses.
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

func syscallKill(pid int) error { return unix.Kill(pid, unix.SIGKILL) }

// agentResponsive waits for the VM's guest agent to answer and reports
// whether it has one at all. An agent that never answers fails the test.
func agentResponsive(t testing.TB, c *Controller) bool {
	t.Helper()
	c.mu.Lock()
	a := c.agent
	c.mu.Unlock()
	if a == nil {
		return false
	}
	deadline := time.Now().Add(bootDeadline)
	for !a.Responsive() {
		if time.Now().After(deadline) {
			t.Fatalf("guest agent on %s not responsive after %s", c.cfg.path(agentSockName), bootDeadline)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

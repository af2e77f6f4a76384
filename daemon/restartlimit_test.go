package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mbvm/mb/bench/procfs"
	"github.com/mbvm/mb/bench/rig"
	"github.com/mbvm/mb/daemon/api"
)

// A VM that keeps crashing under restart: on-failure is restarted with
// backoff until the limit, then left crashed with the reason and a
// restart-limit event; no vmhost is left running. Real daemon, real vmhost
// processes on the fake backend; only the backoff is shortened.
func TestRestartLimitGivesUp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs vmhost processes")
	}
	bin := t.TempDir()
	vmhostBin := filepath.Join(bin, "vmhost")
	if out, err := exec.Command("go", "build", "-o", vmhostBin, "github.com/mbvm/mb/cmd/vmhost").CombinedOutput(); err != nil {
		t.Fatalf("build vmhost: %v\n%s", err, out)
	}
	h := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	d := New(Config{
		Home:    h,
		VMHost:  vmhostBin,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Restart: Backoff{Base: 100 * time.Millisecond, Max: 400 * time.Millisecond, Limit: 2, Window: time.Hour},
	})
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	c := newTestClient(t, h)
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), time.Minute)
		defer scancel()
		_ = c.StopDaemon(sctx, true)
		cancel()
		select {
		case <-done:
		case <-sctx.Done():
			t.Error("the daemon did not stop")
		}
	})

	opCtx, opCancel := context.WithTimeout(ctx, 2*time.Minute)
	defer opCancel()
	if _, err := c.Create(opCtx, []byte("name: r\nbackend: fake\nrestart: on-failure\n")); err != nil {
		t.Fatal(err)
	}
	v, err := c.Start(opCtx, "r", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// Crash it three times: the first two come back, the third is one too
	// many for a limit of 2.
	var pids []int
	for crash := 1; crash <= 3; crash++ {
		pid := v.PID
		pids = append(pids, pid)
		if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil { // the fake VM crashes
			t.Fatalf("crash %d: %v", crash, err)
		}
		v = waitVM(t, c, "r", func(v *api.VM) bool {
			if crash < 3 {
				return v.State == api.StateRunning && v.PID != pid && v.Restarts == crash
			}
			// PID 0: the run is over. While the fake VM crashes its
			// vmhost still answers, with state error, shown as crashed.
			return v.State == api.StateCrashed && v.PID == 0
		})
	}
	if v.Restarts != 2 {
		t.Errorf("restarts = %d, want 2", v.Restarts)
	}
	if !strings.Contains(v.Reason, "restart limit") {
		t.Errorf("reason %q does not say the restart limit was reached", v.Reason)
	}
	// Give a wrong fourth start a chance (the backoff is at most 400 ms).
	time.Sleep(2 * time.Second)
	if v, err := c.Inspect(opCtx, "r"); err != nil || v.State != api.StateCrashed || v.PID != 0 && procfs.Alive(v.PID) {
		t.Errorf("after giving up: %+v, %v; want it crashed with no vmhost", v, err)
	}
	for _, pid := range pids {
		if procfs.Alive(pid) {
			t.Errorf("vmhost %d still runs", pid)
		}
	}
	var restarting, gaveUp int
	for _, ev := range readEvents(opCtx, t, c) {
		if ev.VM != "r" {
			continue
		}
		switch ev.Type {
		case api.EventRestarting:
			restarting++
		case api.EventGaveUp:
			gaveUp++
			if !strings.Contains(ev.Reason, "restart limit") {
				t.Errorf("restart-limit event reason %q", ev.Reason)
			}
		}
	}
	if restarting != 2 || gaveUp != 1 {
		t.Errorf("events: %d restarting, %d restart-limit; want 2 and 1", restarting, gaveUp)
	}
}

// newTestClient returns a client for the daemon in h once it answers.
func newTestClient(t *testing.T, h string) *api.Client {
	t.Helper()
	c := api.NewClient(SocketPath(h))
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := rig.Poll(ctx, 50*time.Millisecond, "the daemon to answer", func() (bool, error) {
		_, err := c.Ping(ctx)
		return err == nil, err
	}); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitVM polls the VM until cond holds, with a deadline generous enough for
// a loaded machine.
func waitVM(t *testing.T, c *api.Client, name string, cond func(*api.VM) bool) *api.VM {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var last *api.VM
	if err := rig.Poll(ctx, 50*time.Millisecond, "VM "+name+" to reach the expected state", func() (bool, error) {
		v, err := c.Inspect(ctx, name)
		if err != nil {
			return false, err
		}
		last = v
		return cond(v), nil
	}); err != nil {
		t.Fatalf("%v; last seen %+v", err, last)
	}
	return last
}

func readEvents(ctx context.Context, t *testing.T, c *api.Client) []api.Event {
	t.Helper()
	body, err := c.Events(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	var evs []api.Event
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		var ev api.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("event %q: %v", sc.Text(), err)
		}
		evs = append(evs, ev)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return evs
}

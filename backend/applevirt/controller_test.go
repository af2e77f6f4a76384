package applevirt

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mbvm/mb/vmhost"
)

// TestStopPhases runs the auto stop against guests that obey different
// phases and checks which phase brought each down.
func TestStopPhases(t *testing.T) {
	cases := []struct {
		name          string
		agent         bool // a responsive agent is connected
		agentObeys    bool
		requestObeyed bool
		want          string
		wantRequests  int
		wantStops     int
	}{
		{"agent", true, true, false, vmhost.ModeAgent, 0, 0},
		{"agent ignored, acpi", true, false, true, vmhost.ModeACPI, 1, 0},
		{"no agent, acpi", false, false, true, vmhost.ModeACPI, 1, 0},
		{"nothing obeys but the hard stop", true, false, false, vmhost.ModeKill, 1, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := newFakeMachine()
			m.obeyRequest = tc.requestObeyed
			var a *fakeAgent
			var ga guestAgent
			if tc.agent {
				a = &fakeAgent{m: m, obey: tc.agentObeys}
				ga = a
			}
			c := runningController(t, m, ga)
			res, err := c.StopMode(context.Background(), 300*time.Millisecond, "")
			if err != nil {
				t.Fatal(err)
			}
			if res.StoppedBy != tc.want || c.StoppedBy() != tc.want {
				t.Fatalf("stopped by %q (StoppedBy %q), want %q", res.StoppedBy, c.StoppedBy(), tc.want)
			}
			if err := c.Wait(); err != nil {
				t.Fatalf("Wait after a requested stop: %v, want nil", err)
			}
			if s := c.State(); s != vmhost.StateStopped {
				t.Fatalf("state after stop %s, want stopped", s)
			}
			requests, stops := m.counts()
			if requests != tc.wantRequests || stops != tc.wantStops {
				t.Fatalf("RequestStop called %d times, Stop %d times; want %d and %d", requests, stops, tc.wantRequests, tc.wantStops)
			}
			if a != nil && a.shutdowns != 1 {
				t.Fatalf("agent shutdown asked %d times, want 1", a.shutdowns)
			}
		})
	}
}

// TestStopSinglePhaseFails: a single phase the guest ignores is an error
// and leaves the VM running.
func TestStopSinglePhaseFails(t *testing.T) {
	m := newFakeMachine()
	c := runningController(t, m, &fakeAgent{m: m})
	for _, mode := range []string{vmhost.ModeACPI, vmhost.ModeAgent} {
		_, err := c.StopMode(context.Background(), 50*time.Millisecond, mode)
		if err == nil || !strings.Contains(err.Error(), "did not go down") {
			t.Fatalf("mode %s ignored by the guest: %v, want a 'did not go down' error", mode, err)
		}
		if s := c.State(); s != vmhost.StateRunning {
			t.Fatalf("state after a failed %s stop %s, want running", mode, s)
		}
	}
	res, err := c.StopMode(context.Background(), time.Second, vmhost.ModeKill)
	if err != nil || res.StoppedBy != vmhost.ModeKill {
		t.Fatalf("mode kill: %+v, %v", res, err)
	}
}

func TestStopModeErrors(t *testing.T) {
	m := newFakeMachine()
	c := runningController(t, m, nil)
	if _, err := c.StopMode(context.Background(), time.Second, vmhost.ModeQuit); err == nil || !strings.Contains(err.Error(), "accepted: auto, agent, acpi, kill") {
		t.Fatalf("mode quit: %v, want an error naming the accepted modes", err)
	}
	if _, err := c.StopMode(context.Background(), time.Second, vmhost.ModeAgent); err == nil || !strings.Contains(err.Error(), "no guest agent") {
		t.Fatalf("mode agent without an agent: %v", err)
	}
	if s := c.State(); s != vmhost.StateRunning {
		t.Fatalf("state after refused modes %s, want running", s)
	}
}

// TestStopHardStopFails: when even the framework's hard stop fails, Stop
// reports it instead of hanging, and the VM stays running.
func TestStopHardStopFails(t *testing.T) {
	m := newFakeMachine()
	m.obeyStop = false
	c := runningController(t, m, nil)
	_, err := c.StopMode(context.Background(), 50*time.Millisecond, vmhost.ModeKill)
	if err == nil || !strings.Contains(err.Error(), "refuses to stop") {
		t.Fatalf("kill that fails: %v", err)
	}
	if s := c.State(); s != vmhost.StateRunning {
		t.Fatalf("state %s, want running", s)
	}
	m.mu.Lock()
	m.obeyStop = true
	m.mu.Unlock()
}

// TestGuestPowerOff: a guest that powers off unasked is a clean exit,
// stopped by "guest"; a later Stop returns at once.
func TestGuestPowerOff(t *testing.T) {
	m := newFakeMachine()
	c := runningController(t, m, nil)
	m.powerOff()
	if err := c.Wait(); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if c.State() != vmhost.StateStopped || c.StoppedBy() != "guest" {
		t.Fatalf("state %s stopped_by %q, want stopped by guest", c.State(), c.StoppedBy())
	}
	res, err := c.StopMode(context.Background(), time.Second, "")
	if err != nil || res.StoppedBy != "guest" {
		t.Fatalf("stop of a stopped VM: %+v, %v", res, err)
	}
	if err := c.ForceStop(context.Background()); err != nil {
		t.Fatalf("force stop of a stopped VM: %v", err)
	}
}

// TestMachineError: the framework's error state is a crash: Wait returns
// the same error to every caller and State says error.
func TestMachineError(t *testing.T) {
	m := newFakeMachine()
	c := runningController(t, m, nil)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = c.Wait() }()
	}
	m.end(machineError)
	wg.Wait()
	for i, err := range errs {
		if err == nil || err != errs[0] || !strings.Contains(err.Error(), "serial.log") {
			t.Fatalf("Wait #%d: %v, want the same error naming the console log", i, err)
		}
	}
	if s := c.State(); s != vmhost.StateError {
		t.Fatalf("state %s, want error", s)
	}
	if c.StoppedBy() != "" {
		t.Fatalf("stopped_by %q for a crash, want empty", c.StoppedBy())
	}
}

func TestForceStop(t *testing.T) {
	m := newFakeMachine()
	c := runningController(t, m, &fakeAgent{m: m})
	res, err := c.ForceStopResult(context.Background())
	if err != nil || res.StoppedBy != vmhost.ModeKill {
		t.Fatalf("force stop: %+v, %v", res, err)
	}
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	if a := c.AgentInfo(); a.State != "none" {
		t.Fatalf("agent state after the VM is gone %q, want none", a.State)
	}
	if _, err := c.Exec(context.Background(), vmhost.ExecRequest{Argv: []string{"true"}}); err == nil {
		t.Fatal("exec on a stopped VM succeeded")
	}
}

// TestStateTransitions: starting until the framework says running,
// stopping during a stop, and the cancelled stop context still ends with
// the hard stop in auto mode.
func TestStateTransitions(t *testing.T) {
	m := newFakeMachine()
	c := newController(&Config{Name: "vm"}, m, testLogger(t))
	if s := c.State(); s != vmhost.StateStarting {
		t.Fatalf("state before start %s, want starting", s)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitState(t, c, vmhost.StateRunning)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := c.StopMode(ctx, time.Second, "")
	if err != nil || res.StoppedBy != vmhost.ModeKill {
		t.Fatalf("auto stop with a cancelled context: %+v, %v; want the hard stop", res, err)
	}
	requests, _ := m.counts()
	if requests != 0 {
		t.Fatalf("RequestStop called %d times with a cancelled context, want 0", requests)
	}
}

// TestStartFailure: a machine that fails to start gives Start's error, and
// the controller ends in error.
func TestStartFailure(t *testing.T) {
	m := newFakeMachine()
	m.startErr = context.DeadlineExceeded
	c := newController(&Config{Name: "vm", SerialLog: "serial.log"}, m, testLogger(t))
	if err := c.start(context.Background()); err == nil || !strings.Contains(err.Error(), "start VM vm") {
		t.Fatalf("start: %v", err)
	}
	if err := c.Wait(); err == nil {
		t.Fatal("Wait after a failed start: nil, want an error")
	}
}

func TestAgentPassThrough(t *testing.T) {
	m := newFakeMachine()
	c := runningController(t, m, &fakeAgent{m: m})
	res, err := c.Exec(context.Background(), vmhost.ExecRequest{Argv: []string{"echo", "hi"}})
	if err != nil || string(res.Stdout) != "hi\n" {
		t.Fatalf("exec: %+v, %v", res, err)
	}
	if _, err := c.Metrics(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a := c.AgentInfo(); a.State != "ok" {
		t.Fatalf("agent info %+v", a)
	}
}

func TestDescribe(t *testing.T) {
	m := newFakeMachine()
	c := runningController(t, m, nil)
	c.cfg.Boot = Boot{Kind: BootLinux, Kernel: "/k", Cmdline: "console=hvc0"}
	d := c.Describe()
	if d.Name != "vm" || d.Details["boot"] != BootLinux || d.Details["kernel"] != "/k" || d.Details["mac"] != MACFromName("vm").String() {
		t.Fatalf("describe: %+v", d)
	}
	if c.Backend() != "applevirt" {
		t.Fatal(c.Backend())
	}
}

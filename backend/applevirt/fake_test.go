package applevirt

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mbvm/mb/agent/qga"
	"github.com/mbvm/mb/vmhost"
)

// fakeMachine stands in for the framework: it reports states on its
// channel as a VM would, and obeys stop requests as configured.
type fakeMachine struct {
	states chan machineState

	mu          sync.Mutex
	ended       bool
	obeyRequest bool // RequestStop powers the guest off
	obeyStop    bool // Stop ends the VM (the framework's hard stop)
	startErr    error
	requests    int
	stops       int
	dial        func(ctx context.Context, port uint32) (net.Conn, error)
}

func newFakeMachine() *fakeMachine {
	return &fakeMachine{states: make(chan machineState, 16), obeyStop: true}
}

func (f *fakeMachine) States() <-chan machineState { return f.states }

func (f *fakeMachine) Start(ctx context.Context) error {
	f.mu.Lock()
	err := f.startErr
	f.mu.Unlock()
	f.send(machineStarting)
	if err != nil {
		f.end(machineError)
		return err
	}
	f.send(machineRunning)
	return nil
}

func (f *fakeMachine) send(s machineState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.ended {
		f.states <- s
	}
}

// end reports a terminal state and closes the channel, as the vz machine
// does after the VM's last state.
func (f *fakeMachine) end(s machineState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ended {
		return
	}
	f.ended = true
	f.states <- s
	close(f.states)
}

// powerOff is the guest shutting down.
func (f *fakeMachine) powerOff() {
	f.send(machineStopping)
	f.end(machineStopped)
}

func (f *fakeMachine) RequestStop() error {
	f.mu.Lock()
	f.requests++
	obey := f.obeyRequest
	f.mu.Unlock()
	if obey {
		go f.powerOff()
	}
	return nil
}

func (f *fakeMachine) Stop() error {
	f.mu.Lock()
	f.stops++
	obey := f.obeyStop
	f.mu.Unlock()
	if !obey {
		return errors.New("fake: the framework refuses to stop")
	}
	f.end(machineStopped)
	return nil
}

func (f *fakeMachine) DialVsock(ctx context.Context, port uint32) (net.Conn, error) {
	f.mu.Lock()
	dial := f.dial
	f.mu.Unlock()
	if dial == nil {
		return nil, errors.New("fake: nothing listens on that vsock port")
	}
	return dial(ctx, port)
}

func (f *fakeMachine) counts() (requests, stops int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests, f.stops
}

// fakeAgent is a guest agent whose shutdown powers the fake machine off
// when obey is set.
type fakeAgent struct {
	m         *fakeMachine
	obey      bool
	shutdowns int
	mu        sync.Mutex
}

func (a *fakeAgent) Shutdown(ctx context.Context) error {
	a.mu.Lock()
	a.shutdowns++
	a.mu.Unlock()
	if a.obey {
		go a.m.powerOff()
	}
	return nil
}
func (a *fakeAgent) Responsive() bool     { return true }
func (a *fakeAgent) Info() *qga.AgentInfo { return &qga.AgentInfo{State: "ok"} }
func (a *fakeAgent) Exec(context.Context, qga.ExecRequest) (*qga.ExecResult, error) {
	return &qga.ExecResult{Stdout: []byte("hi\n")}, nil
}
func (a *fakeAgent) Metrics(context.Context) (json.RawMessage, error) {
	return json.RawMessage(`{}`), nil
}
func (a *fakeAgent) Close() error { return nil }

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// runningController returns a controller over a started fake machine,
// without forwards or a real agent.
func runningController(t *testing.T, m *fakeMachine, agent guestAgent) *Controller {
	t.Helper()
	cfg := &Config{Name: "vm", SerialLog: "/tmp/serial.log", MAC: MACFromName("vm")}
	c := newController(cfg, m, testLogger(t))
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if agent != nil {
		c.setAgent(agent)
	}
	waitState(t, c, vmhost.StateRunning)
	t.Cleanup(func() {
		m.end(machineStopped)
		_ = c.Wait()
	})
	return c
}

// waitState polls until the controller reports want.
func waitState(t *testing.T, c *Controller, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.State() != want {
		if time.Now().After(deadline) {
			t.Fatalf("state %s, want %s", c.State(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

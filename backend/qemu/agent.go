package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/mbvm/mb/agent/qga"
	"github.com/mbvm/mb/backend/internal/guestagent"
	"github.com/mbvm/mb/vmhost"
)

// guestAgent is the host side of the guest agent channel (agent.sock), as
// the controller uses it: the stop phases, status and info, exec and
// metrics. *qga.Watcher implements it; everything agent-related in this
// package lives in this file.
type guestAgent interface {
	// Shutdown asks the guest to power itself off; it returns once the
	// request is delivered, not once the guest is down.
	Shutdown(ctx context.Context) error
	// Responsive reports whether the agent answered recently.
	Responsive() bool
	// Info is the agent's liveness and facts; it never blocks.
	Info() *qga.AgentInfo
	Exec(ctx context.Context, req qga.ExecRequest) (*qga.ExecResult, error)
	Metrics(ctx context.Context) (json.RawMessage, error)
	Close() error
}

var (
	_ guestAgent             = (*qga.Watcher)(nil)
	_ vmhost.AgentReporter   = (*Controller)(nil)
	_ vmhost.Executor        = (*Controller)(nil)
	_ vmhost.MetricsReporter = (*Controller)(nil)
	_ vmhost.GuestMessenger  = (*Controller)(nil)
)

// startAgent connects the guest agent on agent.sock once QEMU runs and
// starts pinging it every agent_interval of the spec; ctx ends when QEMU is gone. The
// guest needs no agent: without one the agent shows as "none" and the stop
// skips the agent phase.
func (c *Controller) startAgent(ctx context.Context) {
	log := c.log.With("component", "agent")
	client := qga.NewClient(c.cfg.path(agentSockName), qga.ClientOptions{Logger: log})
	w := qga.NewWatcher(client, qga.WatcherOptions{Interval: c.cfg.AgentInterval, Logger: log})
	c.mu.Lock()
	c.agent = w
	c.mu.Unlock()
	go w.Run(ctx)
}

// stopAgent releases the agent connection once QEMU has exited.
func (c *Controller) stopAgent() {
	c.mu.Lock()
	a := c.agent
	c.mu.Unlock()
	if a != nil {
		a.Close()
	}
}

func (c *Controller) agentOrErr() (guestAgent, error) {
	c.mu.Lock()
	a := c.agent
	c.mu.Unlock()
	if a == nil {
		return nil, errors.New("this VM has no guest agent channel")
	}
	if c.isExited() {
		return nil, fmt.Errorf("the VM is %s: no guest agent to ask", c.State())
	}
	return a, nil
}

// AgentInfo reports the guest agent's liveness and what it told about the
// guest (hostname, OS, IP addresses). It never blocks.
func (c *Controller) AgentInfo() *vmhost.AgentInfo {
	c.mu.Lock()
	a := c.agent
	c.mu.Unlock()
	if a == nil || c.isExited() {
		return &vmhost.AgentInfo{State: qga.StateNone}
	}
	return guestagent.Info(a.Info())
}

// Exec runs a command in the guest through the guest agent.
func (c *Controller) Exec(ctx context.Context, req vmhost.ExecRequest) (*vmhost.ExecResult, error) {
	a, err := c.agentOrErr()
	if err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	res, err := guestagent.Exec(ctx, a, req)
	if err != nil && a.Info().State != qga.StateOK {
		err = fmt.Errorf("%w (guest agent state: %s; does the image run mb-agent or qemu-guest-agent?)", err, a.Info().State)
	}
	return res, err
}

// Metrics returns the guest's metrics document through the guest agent.
func (c *Controller) Metrics(ctx context.Context) (json.RawMessage, error) {
	a, err := c.agentOrErr()
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return a.Metrics(ctx)
}

// GuestMessages returns what guest programs sent through mb-agent's
// command socket, as the agent watcher collected it; it never blocks.
func (c *Controller) GuestMessages(after uint64) ([]vmhost.GuestMessage, uint64) {
	c.mu.Lock()
	a := c.agent
	c.mu.Unlock()
	if a == nil {
		return nil, 0
	}
	return guestagent.Messages(a, after)
}

// PollAgent makes the watcher ping the agent now and often for a few
// seconds (someone waits for the guest's readiness).
func (c *Controller) PollAgent() {
	c.mu.Lock()
	a := c.agent
	c.mu.Unlock()
	if a != nil {
		guestagent.Poll(a)
	}
}

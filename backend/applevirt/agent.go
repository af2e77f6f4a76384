package applevirt

import (
	"context"
	"encoding/json"
	"fmt"
	"net"

	"github.com/mbvm/mb/agent/qga"
	"github.com/mbvm/mb/backend/internal/guestagent"
	"github.com/mbvm/mb/vmhost"
)

// guestAgent is the host side of the guest agent as the controller uses
// it; *qga.Watcher implements it. The agent is mb-agent --vsock-port 1024
// in the guest, reached over vsock: the same QGA client as for QEMU, with a
// vsock dialer in place of the unix socket.
type guestAgent interface {
	Shutdown(ctx context.Context) error
	Responsive() bool
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

// startAgent starts the guest agent client and its watcher; they end with
// the VM. A guest without an agent shows as "none" and stops skip the
// agent phase.
func (c *Controller) startAgent() {
	log := c.log.With("component", "agent")
	client := qga.NewClient("vsock:"+fmt.Sprint(c.cfg.AgentPort), qga.ClientOptions{
		Logger: log,
		Dial: func(ctx context.Context) (net.Conn, error) {
			return c.m.DialVsock(ctx, c.cfg.AgentPort)
		},
	})
	w := qga.NewWatcher(client, qga.WatcherOptions{Interval: c.cfg.AgentInterval, Logger: log})
	c.setAgent(w)
	go w.Run(c.ctx)
}

func (c *Controller) setAgent(a guestAgent) {
	c.mu.Lock()
	c.agent = a
	c.mu.Unlock()
}

func (c *Controller) currentAgent() guestAgent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.agent
}

func (c *Controller) agentOrErr() (guestAgent, error) {
	a := c.currentAgent()
	if a == nil {
		return nil, errNoAgent
	}
	if c.isExited() {
		return nil, fmt.Errorf("the VM is %s: no guest agent to ask", c.State())
	}
	return a, nil
}

// AgentInfo reports the guest agent's liveness and facts; it never blocks.
func (c *Controller) AgentInfo() *vmhost.AgentInfo {
	a := c.currentAgent()
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
		err = fmt.Errorf("%w (guest agent state: %s; does the guest run mb-agent --vsock-port %d?)", err, a.Info().State, c.cfg.AgentPort)
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
	a := c.currentAgent()
	if a == nil {
		return nil, 0
	}
	return guestagent.Messages(a, after)
}

// PollAgent makes the watcher ping the agent now and often for a few
// seconds (someone waits for the guest's readiness).
func (c *Controller) PollAgent() {
	a := c.currentAgent()
	if a != nil {
		guestagent.Poll(a)
	}
}

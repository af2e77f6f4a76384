package fake

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/mbvm/mb/agent/qga"
	"github.com/mbvm/mb/backend/internal/guestagent"
	"github.com/mbvm/mb/vmhost"
)

// AgentController is a fake VM with a real guest agent client: it talks
// QGA to whatever serves the unix socket it was given (a test's hostile
// guest, or mb-agent's guest side run on the host with agent.ServeConn).
// It implements everything Controller does plus vmhost.AgentReporter,
// vmhost.Executor and vmhost.MetricsReporter.
type AgentController struct {
	*Controller
	w *qga.Watcher
}

var (
	_ vmhost.AgentReporter   = (*AgentController)(nil)
	_ vmhost.Executor        = (*AgentController)(nil)
	_ vmhost.MetricsReporter = (*AgentController)(nil)
	_ vmhost.ModeStopper     = (*AgentController)(nil)
	_ vmhost.GuestMessenger  = (*AgentController)(nil)
)

// WithAgent gives c a guest agent on the unix socket at socketPath, pinged
// every interval (qga.DefaultInterval when 0) until the fake VM exits.
func WithAgent(c *Controller, socketPath string, interval time.Duration, log *slog.Logger) *AgentController {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "agent")
	w := qga.NewWatcher(qga.NewClient(socketPath, qga.ClientOptions{Logger: log}),
		qga.WatcherOptions{Interval: interval, Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	go w.Run(ctx)
	go func() {
		<-c.done
		cancel()
		w.Close()
	}()
	return &AgentController{Controller: c, w: w}
}

// AgentInfo implements vmhost.AgentReporter; it never blocks.
func (a *AgentController) AgentInfo() *vmhost.AgentInfo {
	if a.exited() {
		return &vmhost.AgentInfo{State: qga.StateNone}
	}
	return guestagent.Info(a.w.Info())
}

// Exec implements vmhost.Executor through the agent.
func (a *AgentController) Exec(ctx context.Context, req vmhost.ExecRequest) (*vmhost.ExecResult, error) {
	if a.exited() {
		return nil, fmt.Errorf("exec: the fake VM is %s", a.State())
	}
	return guestagent.Exec(ctx, a.w, req)
}

// Metrics implements vmhost.MetricsReporter through the agent.
func (a *AgentController) Metrics(ctx context.Context) (json.RawMessage, error) {
	if a.exited() {
		return nil, fmt.Errorf("metrics: the fake VM is %s", a.State())
	}
	return a.w.Metrics(ctx)
}

func (a *AgentController) exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// GuestMessages implements vmhost.GuestMessenger through the agent.
func (a *AgentController) GuestMessages(after uint64) ([]vmhost.GuestMessage, uint64) {
	return guestagent.Messages(a.w, after)
}

// PollAgent implements vmhost.GuestMessenger.
func (a *AgentController) PollAgent() { guestagent.Poll(a.w) }

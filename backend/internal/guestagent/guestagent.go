// Package guestagent adapts the host's guest agent client (agent/qga) to
// vmhost's exec and agent types, for the backends that have a guest agent
// channel. agent/qga does not import vmhost, so that mb-agent links
// nothing of the host side; the mapping lives here instead.
package guestagent

import (
	"context"
	"errors"
	"fmt"

	"github.com/mbvm/mb/agent/qga"
	"github.com/mbvm/mb/vmhost"
)

// Execer is what runs a command through the agent (*qga.Watcher,
// *qga.Client).
type Execer interface {
	Exec(ctx context.Context, req qga.ExecRequest) (*qga.ExecResult, error)
}

// Exec runs req through e and maps the result and the errors to vmhost's:
// qga.ErrExecTimeout to vmhost.ErrExecTimeout, qga.ErrExecStart to
// vmhost.ErrExecNotFound, vmhost.ErrExecNotExecutable or vmhost.ErrExecStart,
// qga.ErrStdinTooLarge to vmhost.ErrExecStdinTooLarge.
func Exec(ctx context.Context, e Execer, req vmhost.ExecRequest) (*vmhost.ExecResult, error) {
	res, err := e.Exec(ctx, qga.ExecRequest{Argv: req.Argv, Env: req.Env, Stdin: req.Stdin, Timeout: req.Timeout})
	var out *vmhost.ExecResult
	if res != nil {
		out = &vmhost.ExecResult{ExitCode: res.ExitCode, Stdout: res.Stdout, Stderr: res.Stderr,
			OutTruncated: res.OutTruncated, ErrTruncated: res.ErrTruncated}
	}
	switch {
	case err == nil:
		return out, nil
	case errors.Is(err, qga.ErrExecTimeout):
		return out, fmt.Errorf("%w: %w", vmhost.ErrExecTimeout, err)
	case errors.Is(err, qga.ErrExecNotFound):
		return out, fmt.Errorf("%w: %w", vmhost.ErrExecNotFound, err)
	case errors.Is(err, qga.ErrExecNotExecutable):
		return out, fmt.Errorf("%w: %w", vmhost.ErrExecNotExecutable, err)
	case errors.Is(err, qga.ErrExecStart):
		return out, fmt.Errorf("%w: %w", vmhost.ErrExecStart, err)
	case errors.Is(err, qga.ErrStdinTooLarge):
		return out, fmt.Errorf("%w: %w", vmhost.ErrExecStdinTooLarge, err)
	}
	return out, err
}

// Info converts what a qga.Watcher knows of its agent.
func Info(i *qga.AgentInfo) *vmhost.AgentInfo {
	if i == nil {
		return nil
	}
	v := vmhost.AgentInfo(*i)
	return &v
}

// messenger is what a qga.Watcher offers for messages from guest programs.
type messenger interface {
	Messages(after uint64) ([]qga.GuestMessage, uint64)
	PollSoon()
}

var _ messenger = (*qga.Watcher)(nil)

// Messages returns the guest messages numbered after after that agent a
// collected, converted for vmhost; an agent that collects none has none.
func Messages(a any, after uint64) ([]vmhost.GuestMessage, uint64) {
	m, ok := a.(messenger)
	if !ok {
		return nil, 0
	}
	msgs, last := m.Messages(after)
	out := make([]vmhost.GuestMessage, len(msgs))
	for i, gm := range msgs {
		out[i] = vmhost.GuestMessage(gm)
	}
	return out, last
}

// Poll asks agent a to be pinged now and often for a few seconds, when it
// can be.
func Poll(a any) {
	if m, ok := a.(messenger); ok {
		m.PollSoon()
	}
}

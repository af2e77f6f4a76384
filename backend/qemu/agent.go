package qemu

import "context"

// guestAgent is the host side of the guest agent channel (agent.sock), as
// the stop phases use it. The QGA client plugs in here; everything
// agent-related in this package lives in this file.
type guestAgent interface {
	// Shutdown asks the guest to power itself off; it returns once the
	// request is delivered, not once the guest is down.
	Shutdown(ctx context.Context) error
	// Responsive reports whether the agent answered recently.
	Responsive() bool
}

// startAgent connects the guest agent on agent.sock once QEMU runs. It is
// called from Start; with no agent client yet it leaves c.agent nil, and the
// agent stop phase is skipped.
func (c *Controller) startAgent(ctx context.Context) {
	_ = ctx
}

// stopAgent releases the agent connection once QEMU has exited.
func (c *Controller) stopAgent() {}

package qemu

import (
	"context"
	"errors"
	"fmt"

	"github.com/mbvm/mb/agent/qga"
	"github.com/mbvm/mb/backend/internal/guestagent"
	"github.com/mbvm/mb/vmhost"
)

var _ vmhost.StreamExecutor = (*Controller)(nil)

// ExecStream runs a command in the guest with its output streamed, through
// mb-agent's streamed exec.
func (c *Controller) ExecStream(ctx context.Context, req vmhost.StreamRequest, in <-chan vmhost.StreamInput, h vmhost.StreamHandlers) (int, error) {
	a, err := c.agentOrErr()
	if err != nil {
		return 0, fmt.Errorf("exec: %w", err)
	}
	se, ok := a.(guestagent.StreamExecer)
	if !ok {
		return 0, errors.New("exec: this guest agent channel cannot stream")
	}
	code, err := guestagent.ExecStream(ctx, se, req, in, h)
	if err != nil && a.Info().State != qga.StateOK {
		err = fmt.Errorf("%w (guest agent state: %s; does the image run mb-agent?)", err, a.Info().State)
	}
	return code, err
}

package guestagent

import (
	"context"
	"errors"
	"fmt"

	"github.com/mbvm/mb/agent/qga"
	"github.com/mbvm/mb/vmhost"
)

// StreamExecer runs a command with its output streamed (*qga.Watcher).
type StreamExecer interface {
	ExecStream(ctx context.Context, req qga.StreamRequest, in <-chan qga.StreamInput, h qga.StreamHandlers) (int, error)
}

// ExecStream runs req through e, converting vmhost's stream types to
// qga's and qga's errors to vmhost's.
func ExecStream(ctx context.Context, e StreamExecer, req vmhost.StreamRequest, in <-chan vmhost.StreamInput, h vmhost.StreamHandlers) (int, error) {
	qin := make(chan qga.StreamInput)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(qin)
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-in:
				if !ok {
					return
				}
				select {
				case qin <- qga.StreamInput{Data: ev.Data, EOF: ev.EOF, Rows: ev.Rows, Cols: ev.Cols}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	code, err := e.ExecStream(ctx, qga.StreamRequest{Argv: req.Argv, Env: req.Env, TTY: req.TTY, Rows: req.Rows, Cols: req.Cols}, qin,
		qga.StreamHandlers{
			Started: func(int) {
				if h.Started != nil {
					h.Started()
				}
			},
			Output: h.Output,
		})
	switch {
	case err == nil:
		return code, nil
	case errors.Is(err, qga.ErrNoStreaming):
		return 0, fmt.Errorf("%w: %w", vmhost.ErrStreamUnsupported, err)
	case errors.Is(err, qga.ErrExecNotFound):
		return 0, fmt.Errorf("%w: %w", vmhost.ErrExecNotFound, err)
	case errors.Is(err, qga.ErrExecNotExecutable):
		return 0, fmt.Errorf("%w: %w", vmhost.ErrExecNotExecutable, err)
	case errors.Is(err, qga.ErrExecStart):
		return 0, fmt.Errorf("%w: %w", vmhost.ErrExecStart, err)
	}
	return code, err
}

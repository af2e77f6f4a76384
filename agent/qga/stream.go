package qga

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/mbvm/mb/agent/qgaproto"
)

// StreamRequest is a command whose output streams back while it runs.
type StreamRequest struct {
	Argv []string
	// Env, when set, replaces the command's environment.
	Env []string
	// TTY runs the command on a pseudo-terminal of Rows x Cols; its
	// stdout and stderr are then one stream, the terminal's output.
	TTY        bool
	Rows, Cols uint16
}

// StreamInput is one event from the caller of ExecStream: stdin data,
// its end, or (Rows and Cols set) a new terminal size.
type StreamInput struct {
	Data       []byte
	EOF        bool
	Rows, Cols uint16
}

// StreamHandlers receive what a streamed command does.
type StreamHandlers struct {
	// Started is called once the guest started the command.
	Started func(pid int)
	// Output gets each piece of output as it arrives; an error ends the
	// stream (the command is then killed).
	Output func(stdout, stderr []byte) error
}

// ErrNoStreaming: the agent is a stock qemu-ga (or an old mb-agent),
// which cannot stream a command's output.
var ErrNoStreaming = errors.New("the guest agent cannot stream a command's output (stock qemu-guest-agent); mb-agent can")

// streamReadWait is how long one mb-exec-read waits for output. The agent
// channel is shared: input and other callers wait this long at most.
const streamReadWait = 40 * time.Millisecond

// inputActive is how long after stdin arrived reads do not wait for
// output, so that stdin arriving piece by piece is not held up.
const inputActive = 100 * time.Millisecond

// streamInputChunk is the most stdin one mb-exec-input of a stream carries.
const streamInputChunk = qgaproto.MaxInputChunk

// ExecStream runs a command with mb-agent's streamed exec: output goes to
// h.Output as it is produced, stdin and terminal sizes come from in until
// it is closed. It returns the command's exit code (128+signal when a
// signal killed it). When ctx ends or h.Output fails, the command's
// process group is killed and the error returned.
func (c *Client) ExecStream(ctx context.Context, req StreamRequest, in <-chan StreamInput, h StreamHandlers) (int, error) {
	if len(req.Argv) == 0 || req.Argv[0] == "" {
		return 0, errors.New("exec: empty command line: give the program to run")
	}
	var info *qgaproto.Info
	var pid qgaproto.ExecPID
	err := c.do(ctx, c.opts.CallTimeout, func(s *session) error {
		var err error
		if info, err = s.agentInfo(); err != nil {
			return err
		}
		if !info.Supports(qgaproto.ExecReadCommand) {
			return ErrNoStreaming
		}
		args := qgaproto.ExecArgs{Path: req.Argv[0], Arg: req.Argv[1:], Env: req.Env, Stream: true, StdinStream: true}
		if req.TTY {
			args.Pty = &qgaproto.WinSize{Rows: req.Rows, Cols: req.Cols}
		}
		return s.call("guest-exec", args, &pid)
	})
	var guestErr *qgaproto.Error
	switch {
	case errors.As(err, &guestErr):
		return 0, fmt.Errorf("%w: %q: %s", startReason(guestErr), req.Argv[0], guestErr.Desc)
	case errors.Is(err, ErrNoStreaming):
		return 0, err
	case err != nil:
		return 0, fmt.Errorf("start %q in the guest: %w", req.Argv[0], err)
	}
	if h.Started != nil {
		h.Started(pid.PID)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// inputBusy is set while stdin waits for the channel: reads then do
	// not wait for output, so stdin flows at the channel's pace.
	var inputBusy atomic.Bool
	// lastInput is when stdin last arrived (unix nanoseconds): more is
	// likely to follow soon, so reads keep not waiting for a while.
	var lastInput atomic.Int64
	// stopInput ends the stdin pump once the command is done with. A call
	// the pump has in flight then finishes instead of being cancelled:
	// cancelling it leaves its reply unread, which drops the channel, and
	// the next call (the next exec) would reconnect and resynchronise, a
	// round trip the agent answers only after its idle-port backoff.
	// A stream that failed cancels the call at once.
	stopInput := make(chan struct{})
	inputDone := make(chan struct{})
	go func() {
		defer close(inputDone)
		c.pumpInput(ctx, stopInput, pid.PID, in, &inputBusy, &lastInput)
	}()
	exited := false
	defer func() {
		if !exited {
			cancel(nil)
		}
		close(stopInput)
		t := time.NewTimer(inputFinish)
		defer t.Stop()
		select {
		case <-inputDone:
		case <-t.C:
			cancel(nil)
			<-inputDone
		}
	}()
	// The first read does not wait either: a client's first stdin (or its
	// end, for a command that reads none) follows the start at once, and
	// a read waiting for output would hold it back for streamReadWait.
	first := true
	for {
		var r qgaproto.ExecRead
		wait := int(streamReadWait / time.Millisecond)
		if first || inputBusy.Load() || time.Since(time.Unix(0, lastInput.Load())) < inputActive {
			wait = 0
		}
		first = false
		err := c.do(ctx, c.opts.CallTimeout+streamReadWait, func(s *session) error {
			return s.call(qgaproto.ExecReadCommand, qgaproto.ExecReadArgs{PID: pid.PID, WaitMs: wait}, &r)
		})
		if err == nil && (len(r.OutData) > 0 || len(r.ErrData) > 0) && h.Output != nil {
			if oerr := h.Output(r.OutData, r.ErrData); oerr != nil {
				cancel(oerr)
			}
		}
		if ctx.Err() != nil {
			return 0, c.abandon(ctx, info, pid.PID, req.Argv[0], context.Cause(ctx))
		}
		if err != nil {
			return 0, c.abandon(context.WithoutCancel(ctx), info, pid.PID, req.Argv[0],
				fmt.Errorf("read its output: %w", err))
		}
		if r.Exited {
			exited = true
			switch {
			case r.ExitCode != nil:
				return *r.ExitCode, nil
			case r.Signal != nil:
				return 128 + *r.Signal, nil
			}
			return 0, nil
		}
	}
}

// inputFinish bounds how long the end of a streamed exec waits for a stdin
// call in flight to finish before cancelling it.
const inputFinish = 5 * time.Second

// pumpInput hands stdin and resizes from in to the agent until in is
// closed, stop is closed (the command is done with; input still queued is
// dropped, a call in flight finishes) or ctx ends. Stdin the command does
// not take yet is sent again; failures after the command exited are
// expected and dropped.
func (c *Client) pumpInput(ctx context.Context, stop <-chan struct{}, pid int, in <-chan StreamInput, busy *atomic.Bool, last *atomic.Int64) {
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	for {
		var ev StreamInput
		var ok bool
		busy.Store(false)
		select {
		case <-ctx.Done():
			return
		case <-stop:
			return
		case ev, ok = <-in:
			if !ok {
				return
			}
		}
		if stopped() {
			return
		}
		busy.Store(true)
		last.Store(time.Now().UnixNano())
		if ev.Rows > 0 && ev.Cols > 0 {
			err := c.Call(ctx, qgaproto.ExecResizeCommand, qgaproto.ExecResizeArgs{PID: pid, WinSize: qgaproto.WinSize{Rows: ev.Rows, Cols: ev.Cols}}, nil)
			if err != nil {
				c.log.Debug("resize not delivered", "pid", pid, "error", err)
			}
		}
		data := ev.Data
		for (len(data) > 0 || ev.EOF) && !stopped() {
			n := min(len(data), streamInputChunk)
			args := qgaproto.ExecInputArgs{PID: pid, Data: data[:n], EOF: ev.EOF && n == len(data)}
			var res qgaproto.ExecInputResult
			if err := c.Call(ctx, qgaproto.ExecInputCommand, args, &res); err != nil {
				c.log.Debug("stdin not delivered", "pid", pid, "error", err)
				if ctx.Err() != nil {
					return
				}
				// The command closed its stdin or exited: drop the rest.
				data, ev.EOF = nil, false
				break
			}
			data = data[min(res.Written, n):]
			if args.EOF && res.Written == n {
				ev.EOF = false
				// No stdin follows its end: reads may wait for output
				// again at once.
				last.Store(0)
			}
			if res.Written == 0 && (len(data) > 0 || ev.EOF) {
				// The command takes nothing now: give the read loop the
				// channel for a while.
				busy.Store(false)
				t := time.NewTimer(streamReadWait)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-stop:
					t.Stop()
					return
				case <-t.C:
				}
				busy.Store(true)
			}
		}
	}
}

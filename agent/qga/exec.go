package qga

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mbvm/mb/agent/qgaproto"
)

// ExecRequest is a command to run in the guest.
type ExecRequest struct {
	// Argv is the program (looked up in the guest's PATH) and its
	// arguments.
	Argv []string
	// Env, when set, replaces the command's environment.
	Env []string
	// Stdin is the command's whole stdin (none when nil).
	Stdin []byte
	// Timeout, when positive, kills the command after this long.
	Timeout time.Duration
}

// ExecResult is the outcome of a command run in the guest.
type ExecResult struct {
	ExitCode     int
	Stdout       []byte
	Stderr       []byte
	OutTruncated bool
	ErrTruncated bool
}

// Errors Exec wraps, for the caller to tell its outcomes apart.
var (
	// ErrExecTimeout: the command outlived its timeout.
	ErrExecTimeout = errors.New("command timed out")
	// ErrExecStart: the guest could not start the command. The error
	// wraps ErrExecNotFound or ErrExecNotExecutable when the agent said
	// which (mb-agent always does).
	ErrExecStart = errors.New("the guest could not start the command")
	// ErrExecNotFound: there is no such program in the guest.
	ErrExecNotFound = errors.New("no such program")
	// ErrExecNotExecutable: the program cannot be executed.
	ErrExecNotExecutable = errors.New("not executable")
	// ErrStdinTooLarge: stock qemu-ga takes stdin only in one request, and
	// this stdin does not fit in one.
	ErrStdinTooLarge = errors.New("stdin too large for this guest agent")
)

// MaxStockStdin is the most stdin a stock qemu-ga gets (in guest-exec's
// input-data, the only way it takes stdin). mb-agent takes more in chunks.
const MaxStockStdin = qgaproto.MaxInputChunk

// execTimeoutMargin is how long past the timeout the host waits for an
// mb-agent to report the command it killed.
const execTimeoutMargin = 10 * time.Second

// killTimeout bounds the mb-exec-kill sent when the caller gives up.
const killTimeout = 5 * time.Second

// Exec runs a command in the guest with guest-exec and polls
// guest-exec-status until it exits. Env, when set, replaces the command's
// environment with qemu-ga; mb-agent adds a default PATH when Env has none.
// Output is captured, up to 16 MiB per stream (the Truncated flags say when
// more was dropped). Stdin goes whole in guest-exec to a stock qemu-ga (at
// most MaxStockStdin, else ErrStdinTooLarge), and in chunks to an mb-agent
// that has mb-exec-input.
//
// A command killed by a signal reports 128+signal as its exit code. With a
// timeout, an mb-agent kills the command's whole process group when it
// expires; Exec then returns the result and an error wrapping
// ErrExecTimeout. A stock qemu-ga cannot kill it: Exec stops waiting at the
// timeout and returns an error saying that the guest process may live on.
// When ctx ends first, Exec asks an mb-agent that has mb-exec-kill to kill
// the command's process group (stock qemu-ga cannot) and returns ctx's
// error.
func (c *Client) Exec(ctx context.Context, req ExecRequest) (*ExecResult, error) {
	if len(req.Argv) == 0 || req.Argv[0] == "" {
		return nil, errors.New("exec: empty command line: give the program to run")
	}
	var info *qgaproto.Info
	var pid qgaproto.ExecPID
	err := c.do(ctx, c.opts.CallTimeout, func(s *session) error {
		var err error
		if info, err = s.agentInfo(); err != nil {
			return err
		}
		args := qgaproto.ExecArgs{Path: req.Argv[0], Arg: req.Argv[1:], Env: req.Env,
			CaptureOutput: qgaproto.CaptureSeparated}
		if info.IsMBAgent() && req.Timeout > 0 {
			args.TimeoutMs = max(req.Timeout.Milliseconds(), 1)
		}
		switch {
		case len(req.Stdin) <= MaxStockStdin:
			args.InputData = req.Stdin
		case info.Supports(qgaproto.ExecInputCommand):
			args.StdinStream = true
		default:
			return fmt.Errorf("%w: %d bytes; %s takes at most %d in one request (a current mb-agent, as in the mini image, takes up to 16 MiB)",
				ErrStdinTooLarge, len(req.Stdin), agentKind(info), MaxStockStdin)
		}
		return s.call("guest-exec", args, &pid)
	})
	var guestErr *qgaproto.Error
	if errors.As(err, &guestErr) {
		// The agent answered and refused: the command cannot run there.
		return nil, fmt.Errorf("%w: %q: %s", startReason(guestErr), req.Argv[0], guestErr.Desc)
	}
	if err != nil {
		return nil, fmt.Errorf("start %q in the guest: %w", req.Argv[0], err)
	}
	if len(req.Stdin) > MaxStockStdin {
		if err := c.sendStdin(ctx, pid.PID, req.Stdin); err != nil {
			if ctx.Err() != nil {
				return nil, c.abandon(ctx, info, pid.PID, req.Argv[0], context.Cause(ctx))
			}
			// The command may have stopped reading on purpose (head -c):
			// its status still tells what happened.
			c.log.Debug("stdin not delivered whole", "pid", pid.PID, "error", err)
		}
	}

	waitCtx := ctx
	start := time.Now()
	if req.Timeout > 0 {
		limit := req.Timeout
		if info.IsMBAgent() {
			limit += execTimeoutMargin
		}
		var cancel context.CancelFunc
		waitCtx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	delay := 5 * time.Millisecond
	for {
		if ctx.Err() != nil {
			return nil, c.abandon(ctx, info, pid.PID, req.Argv[0], context.Cause(ctx))
		}
		var st qgaproto.ExecStatus
		err := c.do(waitCtx, longCallTimeout, func(s *session) error {
			return s.call("guest-exec-status", qgaproto.ExecStatusArgs{PID: pid.PID}, &st)
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil, c.abandon(ctx, info, pid.PID, req.Argv[0], context.Cause(ctx))
			}
			if req.Timeout > 0 && waitCtx.Err() != nil {
				return nil, fmt.Errorf("%w after %v: %q (guest pid %d) may still run in the guest: the agent (%s) could not stop it",
					ErrExecTimeout, req.Timeout, req.Argv[0], pid.PID, agentKind(info))
			}
			return nil, fmt.Errorf("wait for %q (guest pid %d): %w", req.Argv[0], pid.PID, err)
		}
		if st.Exited {
			res := &ExecResult{Stdout: st.OutData, Stderr: st.ErrData,
				OutTruncated: st.OutTruncated, ErrTruncated: st.ErrTruncated}
			switch {
			case st.ExitCode != nil:
				res.ExitCode = *st.ExitCode
			case st.Signal != nil:
				res.ExitCode = 128 + *st.Signal
			}
			if req.Timeout > 0 && st.Signal != nil && time.Since(start) >= req.Timeout {
				return res, fmt.Errorf("%w after %v: %q was killed with its process group", ErrExecTimeout, req.Timeout, req.Argv[0])
			}
			return res, nil
		}
		t := time.NewTimer(delay)
		select {
		case <-waitCtx.Done():
			t.Stop()
		case <-t.C:
		}
		delay = min(delay*2, 200*time.Millisecond)
	}
}

// sendStdin streams stdin to an mb-agent in chunks, the last with EOF.
func (c *Client) sendStdin(ctx context.Context, pid int, data []byte) error {
	for {
		n := min(len(data), qgaproto.MaxInputChunk)
		args := qgaproto.ExecInputArgs{PID: pid, Data: data[:n], EOF: n == len(data)}
		// The agent waits up to 10 s for the command to take a chunk;
		// the call waits longer, so the agent's answer comes first.
		err := c.do(ctx, longCallTimeout, func(s *session) error {
			return s.call(qgaproto.ExecInputCommand, args, nil)
		})
		if err != nil {
			return fmt.Errorf("send stdin to guest pid %d: %w", pid, err)
		}
		data = data[n:]
		if len(data) == 0 {
			return nil
		}
	}
}

// abandon is called when the caller gave up on a running command, for
// the reason why (the context's cause, or the error that ended the
// wait): an mb-agent kills its process group; a stock qemu-ga cannot, and
// the command runs on.
func (c *Client) abandon(ctx context.Context, info *qgaproto.Info, pid int, prog string, why error) error {
	if !info.Supports(qgaproto.ExecKillCommand) {
		return fmt.Errorf("exec of %q given up: %w; the command (guest pid %d) runs on: the agent (%s) cannot kill it", prog, why, pid, agentKind(info))
	}
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killTimeout)
	defer cancel()
	if err := c.Call(kctx, qgaproto.ExecKillCommand, qgaproto.ExecKillArgs{PID: pid}, nil); err != nil {
		return fmt.Errorf("exec of %q given up: %w; killing its process group (guest pid %d) failed: %v", prog, why, pid, err)
	}
	return fmt.Errorf("exec of %q given up: %w; its process group (guest pid %d) was killed", prog, why, pid)
}

// startReason turns a refused guest-exec into ErrExecStart, wrapping the
// reason when the agent gave one.
func startReason(e *qgaproto.Error) error {
	switch e.Reason {
	case qgaproto.ReasonNotFound:
		return fmt.Errorf("%w: %w", ErrExecStart, ErrExecNotFound)
	case qgaproto.ReasonNotExecutable:
		return fmt.Errorf("%w: %w", ErrExecStart, ErrExecNotExecutable)
	}
	return ErrExecStart
}

func agentKind(info *qgaproto.Info) string {
	if info != nil && info.IsMBAgent() {
		return "mb-agent"
	}
	return "qemu-ga"
}

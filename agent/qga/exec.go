package qga

import (
	"context"
	"errors"
	"fmt"
	"github.com/mbvm/mb/agent/qgaproto"
	"time"

	"github.com/mbvm/mb/vmhost"
)

// ErrExecTimeout is returned (wrapped) when a command outlives its timeout.
// It is vmhost.ErrExecTimeout, so that vmhost reports it as a result.
var ErrExecTimeout = vmhost.ErrExecTimeout

// execTimeoutMargin is how long past the timeout the host waits for an
// mb-agent to report the command it killed.
const execTimeoutMargin = 10 * time.Second

// Exec runs a command in the guest with guest-exec and polls
// guest-exec-status until it exits. Argv[0] is looked up in the guest's
// PATH. Env, when set, replaces the command's environment with qemu-ga;
// mb-agent adds a default PATH when Env has none. Output is captured, up to
// 16 MiB per stream (the Truncated flags say when more was dropped).
//
// A command killed by a signal reports 128+signal as its exit code. With a
// timeout, an mb-agent kills the command's whole process group when it
// expires; Exec then returns the result and an error wrapping
// ErrExecTimeout. A stock qemu-ga cannot kill it: Exec stops waiting at the
// timeout and returns an error saying that the guest process may live on.
func (c *Client) Exec(ctx context.Context, req vmhost.ExecRequest) (*vmhost.ExecResult, error) {
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
		args := qgaproto.ExecArgs{Path: req.Argv[0], Arg: req.Argv[1:], Env: req.Env, InputData: req.Stdin, CaptureOutput: true}
		if info.IsMBAgent() && req.Timeout > 0 {
			args.TimeoutMs = max(req.Timeout.Milliseconds(), 1)
		}
		return s.call("guest-exec", args, &pid)
	})
	var guestErr *qgaproto.Error
	if errors.As(err, &guestErr) {
		// The agent answered and refused: the command cannot run there.
		return nil, fmt.Errorf("%w: %q: %s", vmhost.ErrExecStart, req.Argv[0], guestErr.Desc)
	}
	if err != nil {
		return nil, fmt.Errorf("start %q in the guest: %w", req.Argv[0], err)
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
		var st qgaproto.ExecStatus
		err := c.do(waitCtx, longCallTimeout, func(s *session) error {
			return s.call("guest-exec-status", qgaproto.ExecStatusArgs{PID: pid.PID}, &st)
		})
		if err != nil {
			if req.Timeout > 0 && ctx.Err() == nil && waitCtx.Err() != nil {
				return nil, fmt.Errorf("%w after %v: %q (guest pid %d) may still run in the guest: the agent (%s) could not stop it",
					ErrExecTimeout, req.Timeout, req.Argv[0], pid.PID, agentKind(info))
			}
			return nil, fmt.Errorf("wait for %q (guest pid %d): %w", req.Argv[0], pid.PID, err)
		}
		if st.Exited {
			res := &vmhost.ExecResult{Stdout: st.OutData, Stderr: st.ErrData,
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

func agentKind(info *qgaproto.Info) string {
	if info != nil && info.IsMBAgent() {
		return "mb-agent"
	}
	return "qemu-ga"
}

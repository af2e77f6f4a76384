package vmhost

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

func (s *Server) exec(ctx context.Context, req *Request) *Response {
	ex, ok := s.controller.(Executor)
	if !ok {
		return &Response{Error: fmt.Sprintf("exec is not available: the %s backend has no guest agent channel", s.controller.Backend())}
	}
	if len(req.Argv) == 0 {
		return &Response{Error: `exec needs "argv": the command and its arguments, for example {"method":"exec","argv":["uname","-a"]}`}
	}
	timeout := 60 * time.Second
	if req.TimeoutSeconds > 0 {
		timeout = time.Duration(req.TimeoutSeconds) * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout+10*time.Second)
	defer cancel()
	res, err := ex.Exec(ctx, ExecRequest{Argv: req.Argv, Env: req.Env, Stdin: req.Stdin, Timeout: timeout})
	switch {
	case errors.Is(err, ErrExecStart):
		// Like a shell: 127 for a program that is not there, 126 else.
		code := 126
		if msg := strings.ToLower(err.Error()); strings.Contains(msg, "no such file") || strings.Contains(msg, "not found") {
			code = 127
		}
		return &Response{OK: true, ExitCode: &code, ExecError: err.Error()}
	case errors.Is(err, ErrExecTimeout):
		// A timed-out command still returns what it wrote before it was
		// killed.
		if res == nil {
			res = &ExecResult{ExitCode: 124}
		}
		code := res.ExitCode
		return &Response{OK: true, ExitCode: &code, Stdout: res.Stdout, Stderr: res.Stderr,
			OutTruncated: res.OutTruncated, ErrTruncated: res.ErrTruncated, TimedOut: true, ExecError: err.Error()}
	case err != nil:
		return &Response{Error: fmt.Sprintf("exec: %v", err)}
	case res == nil:
		return &Response{Error: "exec: the backend returned no result"}
	}
	code := res.ExitCode
	return &Response{OK: true, ExitCode: &code, Stdout: res.Stdout, Stderr: res.Stderr,
		OutTruncated: res.OutTruncated, ErrTruncated: res.ErrTruncated}
}

package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/internal/testenv"
)

// scriptCmd runs an mb command line on a pseudo-terminal with util-linux
// script(1), or skips the test when script is missing.
func (e *testEnv) scriptCmd(ctx context.Context, args string) *exec.Cmd {
	e.t.Helper()
	tool := testenv.Tool(e.t, "script", "util-linux")
	cmd := exec.CommandContext(ctx, tool, "-qec", filepath.Join(binDir, "mb")+" "+args, "/dev/null")
	cmd.Env = append(e.command(ctx).Env, "SHELL=/bin/sh")
	return cmd
}

// mb start shows a one-line progress display on a terminal, and nothing
// of the sort when its output is not a terminal.
func TestStartProgressOnTerminalOnly(t *testing.T) {
	e := newEnv(t)
	r := e.mb("start", "plain", "--backend", "fake")
	if r.code != 0 || strings.Contains(r.stderr, "\x1b[K") || strings.Contains(r.stderr, "\r") {
		t.Errorf("mb start without a terminal: %s; want no progress display", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := e.scriptCmd(ctx, "start tty --backend fake").CombinedOutput()
	if err != nil {
		t.Fatalf("mb start on a terminal: %v\n%q", err, out)
	}
	s := string(out)
	if !strings.Contains(s, "\r\x1b[K") || !strings.Contains(s, "tty: starting") || !strings.Contains(s, "tty is ready") {
		t.Errorf("mb start on a terminal printed %q, want a progress line rewritten in place, then the result", s)
	}
}

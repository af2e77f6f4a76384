package agent

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/agent/qgaproto"
)

// readStream drains a streamed command with mb-exec-read until it exits,
// calling each on every piece of stdout.
func (g *guest) readStream(pid int, each func(out []byte)) (stdout, stderr []byte, r qgaproto.ExecRead) {
	g.t.Helper()
	deadline := time.Now().Add(callTimeout)
	for time.Now().Before(deadline) {
		var rd qgaproto.ExecRead
		g.mustCall(qgaproto.ExecReadCommand, qgaproto.ExecReadArgs{PID: pid, WaitMs: 100}, &rd)
		stdout = append(stdout, rd.OutData...)
		stderr = append(stderr, rd.ErrData...)
		if len(rd.OutData) > 0 && each != nil {
			each(stdout)
		}
		if rd.Exited {
			return stdout, stderr, rd
		}
	}
	g.t.Fatalf("command %d did not finish within %v", pid, callTimeout)
	return
}

// A streamed command's output arrives while it runs; stdin streams in;
// the exit code comes with the last read.
func TestExecStreamOutputWhileRunning(t *testing.T) {
	g := startGuest(t)
	var pid qgaproto.ExecPID
	g.mustCall("guest-exec", map[string]any{"path": "sh", "arg": []string{"-c", "echo first; echo e >&2; read x; echo got $x; exit 3"},
		"mb-stream": true, "mb-stdin-stream": true}, &pid)
	sent := false
	out, errb, r := g.readStream(pid.PID, func(out []byte) {
		if !sent && strings.Contains(string(out), "first") {
			// The command waits for this line: first was streamed
			// before it ended.
			g.mustCall(qgaproto.ExecInputCommand, qgaproto.ExecInputArgs{PID: pid.PID, Data: []byte("it\n"), EOF: true}, nil)
			sent = true
		}
	})
	if string(out) != "first\ngot it\n" || string(errb) != "e\n" || r.ExitCode == nil || *r.ExitCode != 3 {
		t.Errorf("stream: out %q err %q exit %+v", out, errb, r)
	}
	var st qgaproto.ExecStatus
	if err := g.call("guest-exec-status", qgaproto.ExecStatusArgs{PID: pid.PID}, &st); err == nil {
		t.Errorf("the entry of a command whose exit was read is still there: %+v", st)
	}
}

// On a pseudo-terminal: the size is set and changes, stdin is a
// terminal, and ^C interrupts the foreground command.
func TestExecStreamPty(t *testing.T) {
	g := startGuest(t)
	var pid qgaproto.ExecPID
	g.mustCall("guest-exec", map[string]any{"path": "sh", "arg": []string{"-c",
		`stty size; echo ready; read x; stty size; trap 'echo caught; exit 5' INT; echo waiting; while :; do sleep 0.1; done`},
		"mb-stream": true, "mb-pty": qgaproto.WinSize{Rows: 24, Cols: 80}}, &pid)
	step := 0
	out, _, r := g.readStream(pid.PID, func(out []byte) {
		switch {
		case step == 0 && bytes.Contains(out, []byte("ready")):
			g.mustCall(qgaproto.ExecResizeCommand, qgaproto.ExecResizeArgs{PID: pid.PID, WinSize: qgaproto.WinSize{Rows: 40, Cols: 100}}, nil)
			g.mustCall(qgaproto.ExecInputCommand, qgaproto.ExecInputArgs{PID: pid.PID, Data: []byte("go\r")}, nil)
			step = 1
		case step == 1 && bytes.Contains(out, []byte("waiting")):
			g.mustCall(qgaproto.ExecInputCommand, qgaproto.ExecInputArgs{PID: pid.PID, Data: []byte{3}}, nil)
			step = 2
		}
	})
	s := strings.ReplaceAll(string(out), "\r\n", "\n")
	if !strings.Contains(s, "24 80\n") || !strings.Contains(s, "40 100\n") || !strings.Contains(s, "caught") || r.ExitCode == nil || *r.ExitCode != 5 {
		t.Errorf("pty session: out %q exit %+v", s, r)
	}
}

// Stdin larger than the agent's queue arrives whole when the host sends
// again what was not taken.
func TestExecStreamLargeStdin(t *testing.T) {
	g := startGuest(t)
	var pid qgaproto.ExecPID
	g.mustCall("guest-exec", map[string]any{"path": "sha256sum", "mb-stream": true, "mb-stdin-stream": true}, &pid)
	data := bytes.Repeat([]byte("0123456789abcdef"), 3<<20/16)
	rest := data
	for len(rest) > 0 {
		n := min(len(rest), qgaproto.MaxInputChunk)
		var res qgaproto.ExecInputResult
		g.mustCall(qgaproto.ExecInputCommand, qgaproto.ExecInputArgs{PID: pid.PID, Data: rest[:n], EOF: n == len(rest)}, &res)
		if res.Written < n || n != len(rest) {
			rest = rest[res.Written:]
		} else {
			rest = nil
		}
		if res.Written == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	out, _, r := g.readStream(pid.PID, nil)
	sum := sha256.Sum256(data)
	if !strings.HasPrefix(string(out), hex.EncodeToString(sum[:])) || r.ExitCode == nil || *r.ExitCode != 0 {
		t.Errorf("sha256sum of 3 MiB: %q %+v", out, r)
	}
}

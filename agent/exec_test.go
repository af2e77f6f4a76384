package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mbvm/mb/agent/qgaproto"
)

// runExec starts a command and polls guest-exec-status until it exits.
func (g *guest) runExec(args map[string]any) (int, qgaproto.ExecStatus) {
	g.t.Helper()
	var pid qgaproto.ExecPID
	g.mustCall("guest-exec", args, &pid)
	deadline := time.Now().Add(callTimeout)
	for {
		var st qgaproto.ExecStatus
		g.mustCall("guest-exec-status", qgaproto.ExecStatusArgs{PID: pid.PID}, &st)
		if st.Exited {
			return pid.PID, st
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("command %v did not finish within %v", args, callTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestExecExitCodesAndOutput(t *testing.T) {
	g := startGuest(t)
	_, st := g.runExec(map[string]any{"path": "sh", "arg": []string{"-c", "exit 7"}})
	if st.ExitCode == nil || *st.ExitCode != 7 || st.Signal != nil {
		t.Errorf("exit 7: status %+v", st)
	}
	_, st = g.runExec(map[string]any{"path": "/bin/sh", "arg": []string{"-c", "echo out; echo err >&2; printf '\\000\\377'"},
		"capture-output": true})
	if string(st.OutData) != "out\n\x00\xff" || string(st.ErrData) != "err\n" || *st.ExitCode != 0 {
		t.Errorf("output: %+v", st)
	}
	_, st = g.runExec(map[string]any{"path": "cat", "input-data": []byte("from stdin"), "capture-output": "separated"})
	if string(st.OutData) != "from stdin" {
		t.Errorf("stdin: out %q", st.OutData)
	}
	_, st = g.runExec(map[string]any{"path": "sh", "arg": []string{"-c", "echo a; echo b >&2"}, "capture-output": "merged"})
	if string(st.OutData) != "a\nb\n" || len(st.ErrData) != 0 {
		t.Errorf("merged: %+v", st)
	}
	_, st = g.runExec(map[string]any{"path": "sh", "arg": []string{"-c", `echo "$FOO:$PATH"`}, "env": []string{"FOO=bar"}, "capture-output": true})
	if !strings.HasPrefix(string(st.OutData), "bar:/") {
		t.Errorf("env: out %q, want FOO set and a default PATH", st.OutData)
	}
	_, st = g.runExec(map[string]any{"path": "sh", "arg": []string{"-c", "kill -TERM $$"}})
	if st.Signal == nil || *st.Signal != int(unix.SIGTERM) || st.ExitCode != nil {
		t.Errorf("killed by SIGTERM: %+v", st)
	}
	if e := g.call("guest-exec", map[string]any{"path": "/no/such/binary"}, nil); e == nil || !strings.Contains(e.Desc, "/no/such/binary") {
		t.Errorf("missing binary: error %v", e)
	}
	if e := g.call("guest-exec-status", qgaproto.ExecStatusArgs{PID: 999999}, nil); e == nil {
		t.Error("status of unknown pid: want an error")
	}
}

func TestExecStatusIsCollectedOnce(t *testing.T) {
	g := startGuest(t)
	pid, _ := g.runExec(map[string]any{"path": "true"})
	if e := g.call("guest-exec-status", qgaproto.ExecStatusArgs{PID: pid}, nil); e == nil {
		t.Error("second guest-exec-status of a collected command: want an error")
	}
}

func TestExecOutputIsTruncated(t *testing.T) {
	g := startGuest(t)
	_, st := g.runExec(map[string]any{"path": "sh", "arg": []string{"-c", "head -c 20971520 /dev/zero; echo small >&2"}, "capture-output": true})
	if !st.OutTruncated || len(st.OutData) != MaxExecOutput {
		t.Errorf("20 MiB writer: out-truncated=%v len=%d, want true and %d", st.OutTruncated, len(st.OutData), MaxExecOutput)
	}
	if st.ErrTruncated || string(st.ErrData) != "small\n" || *st.ExitCode != 0 {
		t.Errorf("stderr: truncated=%v data=%q exit=%d", st.ErrTruncated, st.ErrData, *st.ExitCode)
	}
}

func TestExecWithBackgroundChildReturns(t *testing.T) {
	g := startGuest(t)
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	_, st := g.runExec(map[string]any{"path": "sh", "arg": []string{"-c", "sleep 1000 & echo $! > " + pidFile + "; echo started"},
		"capture-output": true})
	if string(st.OutData) != "started\n" || *st.ExitCode != 0 {
		t.Errorf("status %+v", st)
	}
	// The child lives on (a daemon started by exec must survive); clean up.
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	var child int
	for _, c := range strings.TrimSpace(string(b)) {
		child = child*10 + int(c-'0')
	}
	if err := unix.Kill(child, 0); err != nil {
		t.Errorf("background child %d is gone: %v", child, err)
	}
	unix.Kill(child, unix.SIGKILL)
}

func TestExecTimeoutKillsProcessGroup(t *testing.T) {
	g := startGuest(t)
	pid, st := g.runExec(map[string]any{"path": "sh", "arg": []string{"-c", "sleep 1000 & sleep 1000"},
		"capture-output": true, "mb-timeout-ms": 300})
	if st.Signal == nil || *st.Signal != int(unix.SIGKILL) {
		t.Errorf("timed-out command: status %+v, want killed by SIGKILL", st)
	}
	// The whole process group goes, the background sleeper included.
	deadline := time.Now().Add(callTimeout)
	for {
		err := unix.Kill(-pid, 0)
		if errors.Is(err, unix.ESRCH) {
			break
		}
		if time.Now().After(deadline) {
			unix.Kill(-pid, unix.SIGKILL)
			t.Fatalf("process group %d still alive after the timeout: %v", pid, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if e := g.call("guest-exec", map[string]any{"path": "true", "mb-timeout-ms": -1}, nil); e == nil {
		t.Error("negative timeout: want an error")
	}
}

func TestFiles(t *testing.T) {
	g := startGuest(t)
	p := filepath.Join(t.TempDir(), "f")
	var h int64
	g.mustCall("guest-file-open", qgaproto.FileOpenArgs{Path: p, Mode: "w"}, &h)
	var w qgaproto.FileWrite
	g.mustCall("guest-file-write", qgaproto.FileWriteArgs{Handle: h, BufB64: []byte("hello\x00world")}, &w)
	if w.Count != 11 {
		t.Errorf("write count = %d", w.Count)
	}
	g.mustCall("guest-file-close", qgaproto.FileHandleArgs{Handle: h}, nil)
	if e := g.call("guest-file-close", qgaproto.FileHandleArgs{Handle: h}, nil); e == nil {
		t.Error("closing a closed handle: want an error")
	}
	g.mustCall("guest-file-open", qgaproto.FileOpenArgs{Path: p}, &h)
	var r qgaproto.FileRead
	g.mustCall("guest-file-read", qgaproto.FileReadArgs{Handle: h, Count: 100}, &r)
	if string(r.BufB64) != "hello\x00world" || r.Count != 11 || !r.EOF {
		t.Errorf("read = %+v", r)
	}
	g.mustCall("guest-file-close", qgaproto.FileHandleArgs{Handle: h}, nil)
	if e := g.call("guest-file-open", qgaproto.FileOpenArgs{Path: p, Mode: "x"}, nil); e == nil {
		t.Error("bad mode: want an error")
	}
	if e := g.call("guest-file-open", qgaproto.FileOpenArgs{Path: "/no/such/dir/f"}, nil); e == nil {
		t.Error("missing file: want an error")
	}
}

// A refused guest-exec says why in mb-reason, for the host to act on.
func TestExecStartReason(t *testing.T) {
	g := startGuest(t)
	dir := t.TempDir()
	noExec := filepath.Join(dir, "script")
	if err := os.WriteFile(noExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path, reason string
	}{
		{"/no/such/binary", qgaproto.ReasonNotFound},
		{"no-such-program-in-path", qgaproto.ReasonNotFound},
		{noExec, qgaproto.ReasonNotExecutable},
		{dir, qgaproto.ReasonNotExecutable},
	} {
		e := g.call("guest-exec", map[string]any{"path": c.path}, nil)
		if e == nil || e.Reason != c.reason {
			t.Errorf("guest-exec %s: error %+v, want mb-reason %q", c.path, e, c.reason)
		}
	}
}

// mb-exec-kill kills the command's whole process group and forgets it.
func TestExecKill(t *testing.T) {
	g := startGuest(t)
	var pid qgaproto.ExecPID
	g.mustCall("guest-exec", map[string]any{"path": "sh", "arg": []string{"-c", "sleep 1000 & sleep 1000"}}, &pid)
	g.mustCall(qgaproto.ExecKillCommand, qgaproto.ExecKillArgs{PID: pid.PID}, nil)
	deadline := time.Now().Add(callTimeout)
	for !errors.Is(unix.Kill(-pid.PID, 0), unix.ESRCH) {
		if time.Now().After(deadline) {
			unix.Kill(-pid.PID, unix.SIGKILL)
			t.Fatalf("process group %d alive after mb-exec-kill", pid.PID)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Its entry goes once it exited: status is not collected any more.
	for g.call("guest-exec-status", qgaproto.ExecStatusArgs{PID: pid.PID}, nil) == nil {
		if time.Now().After(deadline) {
			t.Fatal("a killed command's status is still kept")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if e := g.call(qgaproto.ExecKillCommand, qgaproto.ExecKillArgs{PID: 999999}, nil); e == nil {
		t.Error("kill of an unknown pid: want an error")
	}
}

// Stdin streamed in mb-exec-input chunks arrives whole and in order, past
// the 1 MiB request limit.
func TestExecStdinStream(t *testing.T) {
	g := startGuest(t)
	data := make([]byte, 3*MaxRequestSize+12345)
	for i := range data {
		data[i] = byte(i * 7 / 5)
	}
	// The first chunk rides in input-data, the rest in mb-exec-input.
	var pid qgaproto.ExecPID
	first := qgaproto.MaxInputChunk / 2
	g.mustCall("guest-exec", qgaproto.ExecArgs{Path: "sha256sum", CaptureOutput: qgaproto.CaptureSeparated, StdinStream: true,
		InputData: data[:first]}, &pid)
	for rest := data[first:]; len(rest) > 0; {
		n := min(len(rest), qgaproto.MaxInputChunk)
		g.mustCall(qgaproto.ExecInputCommand, qgaproto.ExecInputArgs{PID: pid.PID, Data: rest[:n], EOF: n == len(rest)}, nil)
		rest = rest[n:]
	}
	st := g.waitExec(pid.PID)
	sum := sha256.Sum256(data)
	if got, _, _ := strings.Cut(string(st.OutData), " "); got != hex.EncodeToString(sum[:]) {
		t.Errorf("sha256 of streamed stdin in the guest %q, want %x", st.OutData, sum)
	}
	if e := g.call(qgaproto.ExecInputCommand, qgaproto.ExecInputArgs{PID: pid.PID, Data: []byte("x")}, nil); e == nil {
		t.Error("input to a collected command: want an error")
	}
}

func (g *guest) waitExec(pid int) qgaproto.ExecStatus {
	g.t.Helper()
	deadline := time.Now().Add(callTimeout)
	for {
		var st qgaproto.ExecStatus
		g.mustCall("guest-exec-status", qgaproto.ExecStatusArgs{PID: pid}, &st)
		if st.Exited {
			return st
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("command %d did not finish within %v", pid, callTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

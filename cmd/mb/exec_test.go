package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mbvm/mb/agent"
	"github.com/mbvm/mb/daemon/api"
)

// withHostAgent serves mb-agent's guest side on the host for the fake
// backend's VMs of e (MB_FAKE_AGENT_SOCKET), one agent for every
// connection, as in a guest.
func withHostAgent(e *testEnv) {
	e.t.Helper()
	sock := filepath.Join(e.root, "ga.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := agent.NewServer(agent.Options{Shutdown: func(context.Context, string) error { return nil }})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				stop := context.AfterFunc(ctx, func() { c.Close() })
				defer stop()
				srv.ServeConn(ctx, c)
			}()
		}
	}()
	e.t.Cleanup(func() { cancel(); ln.Close() })
	e.extraEnv = append(e.extraEnv, "MB_FAKE_AGENT_SOCKET="+sock)
}

// startFakeWithAgent starts a fake VM whose agent answers.
func startFakeWithAgent(e *testEnv, name string) {
	e.t.Helper()
	e.ok("start", name, "--backend", "fake")
	e.eventually("the agent of "+name, func() bool {
		v := findVM(e.list(), name)
		return v != nil && v.AgentState() == "ok"
	})
}

// waitPIDFile waits for a command to write its PID (its process group, as
// the agent starts every command in a group of its own).
func waitPIDFile(e *testEnv, path string) int {
	e.t.Helper()
	var pid int
	e.eventually("the command to start", func() bool {
		b, err := os.ReadFile(path)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid > 0
	})
	return pid
}

func groupGone(pgid int) bool { return errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH) }

// The exec API is as strict as the CLI: bad input is a 400 saying what is
// wrong, never a 502 "failed in the guest".
func TestExecAPIRefusesBadInput(t *testing.T) {
	e := newEnv(t)
	e.ok("start", "x", "--backend", "fake")
	for _, c := range []struct{ body, want string }{
		{`{"argv":["true"],"timeout_seconds":-1}`, "negative"},
		{`{"argv":[""]}`, "argv[0] is empty"},
		{`{"argv":[]}`, `needs "argv"`},
		{`{"argv":["true"],"timeout":5}`, "unknown field"},
	} {
		status, body := e.httpCall("POST", "/v1/vms/x/exec", c.body)
		var er api.Error
		_ = json.Unmarshal([]byte(body), &er)
		if status != 400 || er.Code != api.CodeBadRequest || !strings.Contains(er.Error, c.want) {
			t.Errorf("exec %s: %d %s; want 400, code %s, an error containing %q", c.body, status, body, api.CodeBadRequest, c.want)
		}
	}
}

// mb exec passes 16 MiB of stdin intact (the documented limit).
func TestExecSixteenMiBStdinFake(t *testing.T) {
	e := newEnv(t)
	withHostAgent(e)
	startFakeWithAgent(e, "x")
	stdin := make([]byte, 16<<20)
	rand.Read(stdin)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := e.command(ctx, "exec", "x", "--", "sha256sum")
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("mb exec with 16 MiB of stdin: %v\n%s", err, errb.String())
	}
	sum := sha256.Sum256(stdin)
	if got, _, _ := strings.Cut(out.String(), " "); got != hex.EncodeToString(sum[:]) {
		t.Errorf("sha256 in the guest %q, want %x", out.String(), sum)
	}
}

// Ctrl-C on mb exec exits 130 and kills the command in the guest.
func TestExecInterruptKillsGuestCommandFake(t *testing.T) {
	e := newEnv(t)
	withHostAgent(e)
	startFakeWithAgent(e, "x")
	pidFile := filepath.Join(e.root, "cmd.pid")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := e.command(ctx, "exec", "x", "--", "sh", "-c", "echo $$ > "+pidFile+"; sleep 1000 & sleep 1000")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := waitPIDFile(e, pidFile)
	t.Cleanup(func() { syscall.Kill(-pgid, syscall.SIGKILL) })
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Errorf("mb exec after SIGINT: %v, want exit 130\n%s", err, errb.String())
	}
	e.eventually("the command's process group to go", func() bool { return groupGone(pgid) })
}

// mb exec against a vmhost that stopped answering (SIGSTOP) fails with a
// clear error instead of waiting forever.
func TestExecHungVMHostFake(t *testing.T) {
	e := newEnv(t)
	withHostAgent(e)
	startFakeWithAgent(e, "x")
	pidFile := filepath.Join(e.root, "cmd.pid")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := e.command(ctx, "exec", "x", "--", "sh", "-c", "echo $$ > "+pidFile+"; exec sleep 1000")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := waitPIDFile(e, pidFile)
	t.Cleanup(func() { syscall.Kill(-pgid, syscall.SIGKILL) })
	pids := e.vmhostPIDs("x")
	if len(pids) != 1 {
		t.Fatalf("vmhost PIDs of x = %v", pids)
	}
	syscall.Kill(pids[0], syscall.SIGSTOP)
	t.Cleanup(func() { syscall.Kill(pids[0], syscall.SIGCONT) })
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(errb.String(), "does not answer") {
		t.Errorf("mb exec against a stopped vmhost: %v, stderr %q; want exit 1 saying vmhost does not answer", err, errb.String())
	}
}

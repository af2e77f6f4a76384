package vmhost_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/mbvm/mb/backend/fake"
	"github.com/mbvm/mb/vmhost"
)

// recordingExec is a controller whose exec records its request and, when
// block is set, waits for the request's context to end.
type recordingExec struct {
	*fake.Controller
	got   chan vmhost.ExecRequest
	block bool
	ended chan error
}

func (r *recordingExec) Exec(ctx context.Context, req vmhost.ExecRequest) (*vmhost.ExecResult, error) {
	r.got <- req
	if r.block {
		<-ctx.Done()
		r.ended <- context.Cause(ctx)
		return nil, ctx.Err()
	}
	return &vmhost.ExecResult{}, nil
}

func newRecording(block bool) *recordingExec {
	return &recordingExec{Controller: fake.New(fake.Options{}), got: make(chan vmhost.ExecRequest, 1), block: block, ended: make(chan error, 1)}
}

// Without timeout_seconds a command has no time limit (it had 60 s).
func TestExecHasNoDefaultTimeout(t *testing.T) {
	rec := newRecording(false)
	h := serve(t, rec)
	if _, err := vmhost.NewClient(h.sock).Call(context.Background(), vmhost.Request{Method: vmhost.MethodExec, Argv: []string{"x"}}); err != nil {
		t.Fatal(err)
	}
	if req := <-rec.got; req.Timeout != 0 {
		t.Errorf("exec without timeout_seconds reached the backend with timeout %v, want none", req.Timeout)
	}
}

// Stdin up to 16 MiB crosses the socket whole, in chunk lines after the
// request line (one line is limited to 1 MiB).
func TestExecStdinChunks(t *testing.T) {
	rec := newRecording(false)
	h := serve(t, rec)
	stdin := make([]byte, vmhost.MaxExecStdin)
	rand.Read(stdin)
	r, err := vmhost.NewClient(h.sock).Call(context.Background(), vmhost.Request{Method: vmhost.MethodExec, Argv: []string{"cat"}, Stdin: stdin})
	if err != nil || !r.OK {
		t.Fatalf("exec with 16 MiB of stdin = %+v, %v", r, err)
	}
	if req := <-rec.got; !bytes.Equal(req.Stdin, stdin) {
		t.Errorf("the backend got %d bytes of stdin, not the %d sent", len(req.Stdin), len(stdin))
	}
	// Over the limit is refused by the client before sending.
	if _, err := vmhost.NewClient(h.sock).Call(context.Background(), vmhost.Request{Method: vmhost.MethodExec, Argv: []string{"cat"},
		Stdin: make([]byte, vmhost.MaxExecStdin+1)}); err == nil {
		t.Error("exec with stdin over 16 MiB: want an error")
	}
}

// A client that hangs up cancels the command.
func TestExecCancelledWhenClientHangsUp(t *testing.T) {
	rec := newRecording(true)
	h := serve(t, rec)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := vmhost.NewClient(h.sock).Call(ctx, vmhost.Request{Method: vmhost.MethodExec, Argv: []string{"sleep", "1000"}})
		done <- err
	}()
	<-rec.got
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled exec call returned %v, want context.Canceled", err)
	}
	select {
	case cause := <-rec.ended:
		if cause == nil {
			t.Error("the backend's exec ended without a cause")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the backend's exec was not cancelled when the client hung up")
	}
	// The connection's server side stays usable for other clients.
	if r, err := vmhost.NewClient(h.sock).Status(); err != nil || !r.OK {
		t.Errorf("status after a cancelled exec = %+v, %v", r, err)
	}
}

// Bad exec arguments are a bad request, with code bad_request.
func TestExecBadArguments(t *testing.T) {
	h := serve(t, newRecording(false))
	for _, argv := range [][]string{nil, {""}} {
		_, err := vmhost.NewClient(h.sock).Call(context.Background(), vmhost.Request{Method: vmhost.MethodExec, Argv: argv})
		var re *vmhost.RemoteError
		if !errors.As(err, &re) || re.Code != vmhost.CodeBadRequest {
			t.Errorf("exec argv %q = %v, want a remote error with code %s", argv, err, vmhost.CodeBadRequest)
		}
	}
}

// A command the guest cannot start is a result with code exec_start.
func TestExecStartCode(t *testing.T) {
	h := serve(t, scriptedExec{fake.New(fake.Options{}), nil, vmhost.ErrExecNotFound})
	r, err := vmhost.NewClient(h.sock).Call(context.Background(), vmhost.Request{Method: vmhost.MethodExec, Argv: []string{"x"}})
	if err != nil || r.Code != vmhost.CodeExecStart || r.ExitCode == nil || *r.ExitCode != 127 {
		t.Errorf("exec of a missing program = %+v, %v; want exit 127 with code %s", r, err, vmhost.CodeExecStart)
	}
}

// An exec to a vmhost that accepts but never answers (a stopped process)
// fails once its status probes go unanswered, instead of waiting forever.
func TestExecGivesUpOnSilentVMHost(t *testing.T) {
	sock := filepath.Join(shortTempDir(t), "vmhost.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	done := make(chan error, 1)
	go func() {
		_, err := vmhost.NewClient(sock).Call(context.Background(), vmhost.Request{Method: vmhost.MethodExec, Argv: []string{"sleep", "1000"}})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, vmhost.ErrUnresponsive) {
			t.Errorf("exec against a silent vmhost = %v, want ErrUnresponsive", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("exec against a silent vmhost is still waiting")
	}
}

// Stdin the guest agent cannot take is an error with code too_large.
func TestExecStdinTooLargeCode(t *testing.T) {
	h := serve(t, scriptedExec{fake.New(fake.Options{}), nil, vmhost.ErrExecStdinTooLarge})
	_, err := vmhost.NewClient(h.sock).Call(context.Background(), vmhost.Request{Method: vmhost.MethodExec, Argv: []string{"cat"}})
	var re *vmhost.RemoteError
	if !errors.As(err, &re) || re.Code != vmhost.CodeTooLarge {
		t.Errorf("exec with stdin the agent cannot take = %v, want code %s", err, vmhost.CodeTooLarge)
	}
}

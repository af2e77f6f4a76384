package main

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

// A descriptor mb inherits (here the write end of a pipe, as a CI runner
// or `flock FILE mb ...` passes down) does not live on in the daemon mb
// starts: once mb has exited, the pipe reaches its end.
func TestDaemonDoesNotKeepInheritedDescriptors(t *testing.T) {
	e := newEnv(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := e.command(ctx, "ls")
	cmd.ExtraFiles = []*os.File{w}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mb ls: %v\n%s", err, out)
	}
	w.Close()
	if readPIDFile(e.home+"/daemon.pid") <= 0 {
		t.Fatal("mb ls started no daemon")
	}
	if err := r.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := r.Read(make([]byte, 1))
	if !errors.Is(err, io.EOF) {
		t.Fatalf("the pipe mb inherited did not end after mb exited (read %d, %v): the daemon holds it", n, err)
	}
}

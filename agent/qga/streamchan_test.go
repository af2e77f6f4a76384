package qga_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mbvm/mb/agent/qga"
	"github.com/mbvm/mb/agent/qgaproto"
)

// recordingConn keeps every request line the client writes.
type recordingConn struct {
	net.Conn
	mu    *sync.Mutex
	lines *[]qgaproto.Request
}

func (c recordingConn) Write(b []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var req struct {
			Execute   string          `json:"execute"`
			Arguments json.RawMessage `json:"arguments"`
		}
		if json.Unmarshal(line, &req) == nil && req.Execute != "" {
			c.mu.Lock()
			*c.lines = append(*c.lines, qgaproto.Request{Execute: req.Execute, Arguments: req.Arguments})
			c.mu.Unlock()
		}
	}
	return c.Conn.Write(b)
}

// streamClient returns a client of a real mb-agent that counts its
// connects and records its requests.
func streamClient(t *testing.T) (c *qga.Client, dials *atomic.Int32, requests func() []qgaproto.Request) {
	t.Helper()
	_, path := startAgent(t)
	dials = new(atomic.Int32)
	var mu sync.Mutex
	var lines []qgaproto.Request
	c = qga.NewClient(path, qga.ClientOptions{CallTimeout: long, Logger: quietLogger(),
		Dial: func(ctx context.Context) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			conn, err := d.DialContext(ctx, "unix", path)
			if err != nil {
				return nil, err
			}
			return recordingConn{Conn: conn, mu: &mu, lines: &lines}, nil
		}})
	t.Cleanup(func() { c.Close() })
	return c, dials, func() []qgaproto.Request {
		mu.Lock()
		defer mu.Unlock()
		return append([]qgaproto.Request(nil), lines...)
	}
}

// A streamed exec that ends normally leaves the agent channel as it found
// it: the calls after it use the same connection, without a reconnect and
// resynchronisation (which cost a slow guest tens of milliseconds each).
func TestExecStreamKeepsTheChannel(t *testing.T) {
	c, dials, _ := streamClient(t)
	ctx := context.Background()
	if _, err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		in := make(chan qga.StreamInput, 1)
		code, err := c.ExecStream(ctx, qga.StreamRequest{Argv: []string{"true"}}, in, qga.StreamHandlers{
			// As vmhost relays it: the client's end of stdin follows
			// the started frame at once.
			Started: func(int) { in <- qga.StreamInput{EOF: true} },
		})
		if err != nil || code != 0 {
			t.Fatalf("exec %d: code %d, %v", i, code, err)
		}
		if _, err := c.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		if n := dials.Load(); n != 1 {
			t.Fatalf("after streamed exec %d the client connected %d times, want once", i, n)
		}
	}
}

// The first mb-exec-read after the start answers at once: the client's
// first stdin (or its end) follows the start, and a read waiting for
// output would hold it back on the shared channel.
func TestExecStreamFirstReadDoesNotWait(t *testing.T) {
	c, _, requests := streamClient(t)
	code, err := c.ExecStream(context.Background(), qga.StreamRequest{Argv: []string{"sh", "-c", "exit 3"}}, nil, qga.StreamHandlers{})
	if err != nil || code != 3 {
		t.Fatalf("exec: code %d, %v; want 3", code, err)
	}
	for _, req := range requests() {
		if req.Execute != qgaproto.ExecReadCommand {
			continue
		}
		var a qgaproto.ExecReadArgs
		if err := json.Unmarshal(req.Arguments.(json.RawMessage), &a); err != nil {
			t.Fatal(err)
		}
		if a.WaitMs != 0 {
			t.Errorf("the first %s waits %d ms for output; want 0", req.Execute, a.WaitMs)
		}
		return
	}
	t.Fatalf("no %s among the requests %+v", qgaproto.ExecReadCommand, requests())
}

// Once stdin's end is delivered no more stdin can come, so the reads that
// follow wait for output again instead of polling the agent (which, in a
// guest, takes CPU from the command itself).
func TestExecStreamReadsWaitAfterStdinEnds(t *testing.T) {
	c, _, requests := streamClient(t)
	in := make(chan qga.StreamInput, 1)
	// The command outlives its stdin a while, so that reads follow it.
	code, err := c.ExecStream(context.Background(), qga.StreamRequest{Argv: []string{"sh", "-c", "cat; sleep 0.3"}}, in, qga.StreamHandlers{
		Started: func(int) { in <- qga.StreamInput{EOF: true} },
	})
	if err != nil || code != 0 {
		t.Fatalf("exec: code %d, %v", code, err)
	}
	eof, polls, reads := false, 0, 0
	for _, req := range requests() {
		switch req.Execute {
		case qgaproto.ExecInputCommand:
			eof = true
		case qgaproto.ExecReadCommand:
			var a qgaproto.ExecReadArgs
			if err := json.Unmarshal(req.Arguments.(json.RawMessage), &a); err != nil {
				t.Fatal(err)
			}
			if eof {
				reads++
				if a.WaitMs == 0 {
					polls++
				}
			}
		}
	}
	t.Logf("after stdin's end: %d reads, %d of them without waiting", reads, polls)
	// One or two reads may still be on their way when the end goes out;
	// polling until the input pause is over makes hundreds.
	if !eof || polls > 10 {
		t.Errorf("after stdin's end (sent: %v), %d of %d reads did not wait for output; want a few at most", eof, polls, reads)
	}
}

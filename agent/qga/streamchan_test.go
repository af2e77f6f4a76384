package qga_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	"github.com/mbvm/mb/agent/qga"
)

// A streamed exec that ends normally leaves the agent channel as it found
// it: the calls after it use the same connection, without a reconnect and
// resynchronisation (which cost a slow guest tens of milliseconds each).
func TestExecStreamKeepsTheChannel(t *testing.T) {
	_, path := startAgent(t)
	var dials atomic.Int32
	c := qga.NewClient(path, qga.ClientOptions{CallTimeout: long, Logger: quietLogger(),
		Dial: func(ctx context.Context) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}})
	t.Cleanup(func() { c.Close() })
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

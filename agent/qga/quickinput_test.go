package qga_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"sync"
	"testing"

	"github.com/mbvm/mb/agent/qga"
	"github.com/mbvm/mb/agent/qgaproto"
)

// rawConn keeps the bytes the client writes.
type rawConn struct {
	net.Conn
	mu  *sync.Mutex
	out *bytes.Buffer
}

func (c rawConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.out.Write(b)
	c.mu.Unlock()
	return c.Conn.Write(b)
}

// The client's stdin requests are exactly the form the agent decodes on
// its quick path (qgaproto.ParseExecInput), so a streamed stdin into the
// guest is never slowed by the general JSON decoder; and the data arrives
// whole.
func TestExecInputTakesTheQuickPath(t *testing.T) {
	_, path := startAgent(t)
	var mu sync.Mutex
	var out bytes.Buffer
	c := qga.NewClient(path, qga.ClientOptions{CallTimeout: long, Logger: quietLogger(),
		Dial: func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "unix", path)
			if err != nil {
				return nil, err
			}
			return rawConn{Conn: conn, mu: &mu, out: &out}, nil
		}})
	t.Cleanup(func() { c.Close() })

	data := bytes.Repeat([]byte("0123456789abcdef\x00\xff\"\\"), 64<<10) // 1.25 MiB: three chunks
	in := make(chan qga.StreamInput, 2)
	in <- qga.StreamInput{Data: data}
	in <- qga.StreamInput{EOF: true}
	close(in)
	var got bytes.Buffer
	code, err := c.ExecStream(context.Background(), qga.StreamRequest{Argv: []string{"sha256sum"}}, in, qga.StreamHandlers{
		Output: func(stdout, _ []byte) error { got.Write(stdout); return nil },
	})
	if err != nil || code != 0 {
		t.Fatalf("exec: code %d, %v", code, err)
	}
	sum := sha256.Sum256(data)
	if want := []byte(hex.EncodeToString(sum[:])); !bytes.HasPrefix(got.Bytes(), want) {
		t.Errorf("sha256sum in the guest: got %q, want %s", got.Bytes(), want)
	}
	mu.Lock()
	defer mu.Unlock()
	inputs, quick := 0, 0
	for _, line := range bytes.Split(out.Bytes(), []byte("\n")) {
		if !bytes.Contains(line, []byte(`"`+qgaproto.ExecInputCommand+`"`)) {
			continue
		}
		inputs++
		if _, ok := qgaproto.ParseExecInput(bytes.TrimSpace(line)); ok {
			quick++
		}
	}
	if inputs < 3 || quick != inputs {
		t.Errorf("%d of the client's %d %s requests take the agent's quick path; want all (and at least 3)", quick, inputs, qgaproto.ExecInputCommand)
	}
}

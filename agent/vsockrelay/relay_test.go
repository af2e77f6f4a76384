package vsockrelay

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// echoServer listens on 127.0.0.1 and upper-cases every line it reads; it
// returns the port.
func echoServer(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := io.WriteString(c, strings.ToUpper(sc.Text())+"\n"); err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// freePort returns a 127.0.0.1 port with nothing listening.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// exercise drives a relay listening on l through dial: a relayed echo, a
// refused port, a bad request; then it stops the relay and checks Serve
// returns.
func exercise(t *testing.T, l net.Listener, dial func() (net.Conn, error)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, Options{}) }()

	port := echoServer(t)
	c, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteRequest(c, port); err != nil {
		t.Fatal(err)
	}
	if err := ReadReply(c, port); err != nil {
		t.Fatalf("relay to echo port: %v", err)
	}
	r := bufio.NewReader(c)
	for _, line := range []string{"hello", "relay"} {
		if _, err := io.WriteString(c, line+"\n"); err != nil {
			t.Fatal(err)
		}
		got, err := r.ReadString('\n')
		if err != nil || got != strings.ToUpper(line)+"\n" {
			t.Fatalf("relayed echo of %q: got %q, %v", line, got, err)
		}
	}
	// Half-close: the guest side sees EOF and closes, the host side then
	// reads EOF too.
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if rest, err := io.ReadAll(r); err != nil || len(rest) != 0 {
			t.Fatalf("after half-close: read %q, %v; want EOF", rest, err)
		}
	}
	c.Close()

	// A port nothing listens on is refused with a clear error.
	closed := freePort(t)
	c2, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteRequest(c2, closed); err != nil {
		t.Fatal(err)
	}
	if err := ReadReply(c2, closed); err == nil || !strings.Contains(err.Error(), "refused a connection") {
		t.Fatalf("reply for a closed port: %v, want a refusal", err)
	}
	c2.Close()

	// A request that is not ours gets the connection closed unanswered.
	c3, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c3.Write([]byte("GET ")); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(c3); err != nil || len(b) != 0 {
		t.Fatalf("bad request: read %q, %v; want the connection closed", b, err)
	}
	c3.Close()

	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Serve returned %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}

// TestRelayOverUnixSocket runs the relay with a unix socket standing in for
// the vsock transport: the same Serve and Handle the guest runs.
func TestRelayOverUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	exercise(t, l, func() (net.Conn, error) { return net.Dial("unix", path) })
}

func TestRequestEncoding(t *testing.T) {
	var b bytes.Buffer
	if err := WriteRequest(&b, 22); err != nil {
		t.Fatal(err)
	}
	if got := b.Bytes(); !bytes.Equal(got, []byte{'m', 'r', 0, 22}) {
		t.Fatalf("request for port 22 = %v", got)
	}
	if p, err := ReadRequest(&b); err != nil || p != 22 {
		t.Fatalf("ReadRequest = %d, %v", p, err)
	}
	for _, port := range []int{0, -1, 65536} {
		if err := WriteRequest(io.Discard, port); err == nil {
			t.Errorf("WriteRequest(%d) = nil, want an error", port)
		}
	}
	if _, err := ReadRequest(bytes.NewReader([]byte{'m', 'r', 0, 0})); err == nil {
		t.Error("ReadRequest accepted port 0")
	}
	if _, err := ReadRequest(bytes.NewReader([]byte{'m', 'r'})); err == nil {
		t.Error("ReadRequest accepted a short request")
	}
}

// Package vsockrelay is the guest half of the applevirt backend's port
// forwarding. Apple's NAT network has no host port forwarding, so vmhost
// listens on the host's 127.0.0.1 and carries each connection over vsock to
// this relay inside the guest, which connects to 127.0.0.1:PORT there.
//
// The exchange on each vsock connection: the host sends a 4-byte request
// ('m', 'r', then the target port, big-endian); the relay answers one byte,
// ReplyOK once it has connected to the port or ReplyRefused when it could
// not, and then carries bytes both ways until either side closes.
package vsockrelay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"
)

// DefaultPort is the vsock port the relay listens on.
const DefaultPort = 1025

// Replies to a request.
const (
	ReplyOK      byte = 0
	ReplyRefused byte = 1
)

// requestTimeout bounds the wait for a request on a new connection.
const requestTimeout = 10 * time.Second

// dialTimeout bounds the connection to the guest port.
const dialTimeout = 10 * time.Second

// WriteRequest asks the relay for a connection to the guest's port.
func WriteRequest(w io.Writer, port int) error {
	if port < 1 || port > 65535 {
		return fmt.Errorf("relay request: port %d is not between 1 and 65535", port)
	}
	b := []byte{'m', 'r', 0, 0}
	binary.BigEndian.PutUint16(b[2:], uint16(port))
	_, err := w.Write(b)
	return err
}

// ReadRequest reads a request and returns the port it names.
func ReadRequest(r io.Reader) (int, error) {
	var b [4]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, fmt.Errorf("read relay request: %w", err)
	}
	if b[0] != 'm' || b[1] != 'r' {
		return 0, fmt.Errorf("bad relay request %q: not from mb's vmhost", b[:])
	}
	port := int(binary.BigEndian.Uint16(b[2:]))
	if port == 0 {
		return 0, errors.New("bad relay request: port 0")
	}
	return port, nil
}

// ReadReply reads the relay's answer to a request: nil once the relay is
// connected to the port.
func ReadReply(r io.Reader, port int) error {
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return fmt.Errorf("relay reply for guest port %d: %w (is mb-agent running with --relay-vsock-port?)", port, err)
	}
	if b[0] != ReplyOK {
		return fmt.Errorf("the guest refused a connection to its port %d: nothing listens there on 127.0.0.1 or any address", port)
	}
	return nil
}

// Dialer connects to a port inside the guest.
type Dialer func(ctx context.Context, port int) (net.Conn, error)

// DialLoopback connects to 127.0.0.1:port: what the relay does in a guest.
func DialLoopback(ctx context.Context, port int) (net.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	return d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
}

// Options configure Serve.
type Options struct {
	// Dial connects to the target port; DialLoopback when nil.
	Dial   Dialer
	Logger *slog.Logger
}

// Serve accepts connections on l (the vsock listener, or any stream
// listener standing in for it) and relays each until ctx ends. It returns
// ctx's error once ctx ends, after every relayed connection is closed.
func Serve(ctx context.Context, l net.Listener, opts Options) error {
	if opts.Dial == nil {
		opts.Dial = DialLoopback
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("relay accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := Handle(ctx, c, opts.Dial); err != nil {
				log.Debug("relayed connection ended", "err", err)
			}
		}()
	}
}

// Handle serves one relay connection: it reads the request, connects to the
// port, answers, and carries bytes both ways. It closes c.
func Handle(ctx context.Context, c net.Conn, dial Dialer) error {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(requestTimeout))
	port, err := ReadRequest(c)
	if err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Time{})
	target, err := dial(ctx, port)
	if err != nil {
		_, _ = c.Write([]byte{ReplyRefused})
		return fmt.Errorf("connect to guest port %d: %w", port, err)
	}
	defer target.Close()
	if _, err := c.Write([]byte{ReplyOK}); err != nil {
		return fmt.Errorf("relay reply: %w", err)
	}
	return Pipe(ctx, c, target)
}

// closeWriter is a connection that can close its sending half.
type closeWriter interface {
	CloseWrite() error
}

// Pipe copies a to b and b to a until both directions have ended or ctx
// ends; when one side stops sending, the other side's sending half is
// closed (where the connection supports it) so that it sees the end. It
// does not close a or b, except to unblock them when ctx ends.
func Pipe(ctx context.Context, a, b net.Conn) error {
	stop := context.AfterFunc(ctx, func() { a.Close(); b.Close() })
	defer stop()
	errs := make(chan error, 2)
	one := func(dst, src net.Conn) {
		_, err := io.Copy(dst, src)
		if cw, ok := dst.(closeWriter); ok {
			_ = cw.CloseWrite()
		} else {
			dst.Close()
		}
		errs <- err
	}
	go one(a, b)
	go one(b, a)
	err1, err2 := <-errs, <-errs
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.Join(err1, err2)
}

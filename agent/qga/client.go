// Package qga is the host side of the guest agent protocol: a Client that
// talks QGA to an agent over a unix socket, and a Watcher that keeps track
// of the agent's liveness for vmhost. The wire types are in
// agent/qgaproto.
//
// The Client works with mb-agent and with a stock qemu-guest-agent. It
// never sends a 0xFF byte, serialises calls (QGA has no request ids), puts
// a deadline on every call, resynchronises with guest-sync-delimited after
// every connect and every failed call, and refuses replies over a size
// limit, so a hostile guest can make calls fail but never hang or crash the
// host.
package qga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/mbvm/mb/agent/qgaproto"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/mbvm/mb/agent/internal/frame"
)

// Defaults of ClientOptions.
const (
	// DefaultMaxReply bounds one reply: two 16 MiB exec output streams fit
	// after base64 encoding.
	DefaultMaxReply = 48 << 20
	// smallReply bounds the replies of commands that return little
	// (everything but exec output and file reads), so a hostile guest can
	// make vmhost hold a large buffer only while it reads such output.
	smallReply = 1 << 20
	// DefaultCallTimeout bounds a call whose context has no sooner deadline.
	DefaultCallTimeout = 10 * time.Second
	// syncResend is how often a sync is sent again while the agent stays
	// silent (it may not have opened its port yet).
	syncResend = 500 * time.Millisecond
	// longCallTimeout bounds calls whose replies can be large
	// (guest-exec-status with output), since a slow guest streams them
	// slowly.
	longCallTimeout = 2 * time.Minute
)

// ErrClosed is returned by calls on a closed Client.
var ErrClosed = errors.New("guest agent client closed")

// ClientOptions configures a Client. The zero value is usable.
type ClientOptions struct {
	// MaxReply is the longest reply accepted (DefaultMaxReply when 0).
	MaxReply int
	// CallTimeout bounds a call (DefaultCallTimeout when 0). A context
	// deadline that comes sooner wins.
	CallTimeout time.Duration
	// Logger receives the client's logs (slog.Default() when nil).
	Logger *slog.Logger
	// Dial connects to the agent; when nil, the Client dials the unix
	// socket path given to NewClient.
	Dial func(ctx context.Context) (net.Conn, error)
}

// Client talks to one guest agent. Calls are serialised, since QGA replies
// carry no request id; a caller waiting for its turn gives up when its
// context ends. Every call has a deadline; a call that fails for any reason
// but an error reply from the agent drops the connection, and the next call
// reconnects and resynchronises first. A Client is safe for concurrent use.
type Client struct {
	path string
	opts ClientOptions
	log  *slog.Logger

	// turn is held by the call using the channel (a one-slot semaphore, so
	// waiting honours a context).
	turn chan struct{}
	// Guarded by turn.
	conn net.Conn
	fr   *frame.Reader
	info *qgaproto.Info
	// used counts the bytes read in the current call; budget is what it
	// may read (see countingReader).
	used, budget int64

	mu     sync.Mutex
	closed bool
	live   net.Conn // the connection, for Close to interrupt a call
	stats  Stats
}

// Stats says what a Client has seen of its agent, for liveness.
type Stats struct {
	// LastOK is when the agent last answered a call (any call).
	LastOK time.Time
	// LastFail is when a call last failed for want of an answer.
	LastFail time.Time
	// Busy is true while a call is using the channel.
	Busy bool
	// Received is true once any byte came from the agent.
	Received bool
}

// NewClient returns a Client for the agent behind the unix socket at path
// (a QEMU chardev in server mode, <vmdir>/agent.sock). It does not connect
// until the first call.
func NewClient(path string, opts ClientOptions) *Client {
	if opts.MaxReply <= 0 {
		opts.MaxReply = DefaultMaxReply
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = DefaultCallTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if opts.Dial == nil {
		opts.Dial = func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
	}
	return &Client{path: path, opts: opts, log: log, turn: make(chan struct{}, 1)}
}

// Stats returns what the client has seen so far. It never blocks on a call.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Close drops the connection; calls after Close fail with ErrClosed. A call
// in progress is interrupted.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	live := c.live
	c.mu.Unlock()
	if live != nil {
		live.Close()
	}
	c.turn <- struct{}{}
	defer func() { <-c.turn }()
	c.dropLocked()
	return nil
}

// session is one call's use of the channel: the connection with its
// deadline set.
type session struct {
	c        *Client
	deadline time.Time
}

// do runs fn holding the channel. Waiting for the channel ends with ctx;
// once it has the channel, fn runs with a deadline of timeout or ctx's,
// whichever comes first, on a connected, synchronised channel.
func (c *Client) do(ctx context.Context, timeout time.Duration, fn func(s *session) error) error {
	select {
	case c.turn <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("wait for the guest agent channel: %w", ctx.Err())
	}
	defer func() { <-c.turn }()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.stats.Busy = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.stats.Busy = false
		c.mu.Unlock()
	}()

	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	s := &session{c: c, deadline: deadline}
	c.used, c.budget = 0, 0
	err := c.ensureConnected(ctx, s)
	if err == nil {
		conn := c.conn
		stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
		err = fn(s)
		if !stop() && err != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
	}
	var qe *qgaproto.Error
	switch {
	case err == nil || errors.As(err, &qe):
		c.noteOK()
	default:
		c.noteFail()
		c.dropLocked()
	}
	return err
}

func (c *Client) noteOK() {
	c.mu.Lock()
	c.stats.LastOK = time.Now()
	c.mu.Unlock()
}

func (c *Client) noteFail() {
	c.mu.Lock()
	c.stats.LastFail = time.Now()
	c.mu.Unlock()
}

func (c *Client) dropLocked() {
	if c.conn != nil {
		drainBriefly(c.conn)
		c.conn.Close()
	}
	c.conn, c.fr, c.info = nil, nil, nil
	c.mu.Lock()
	c.live = nil
	c.mu.Unlock()
}

// drainBriefly reads what has already arrived (64 KiB at most, 10 ms at
// most) before a close: closing a unix socket with unread data resets the
// peer's connection, and some agents (qemu-ga listening on a unix socket)
// exit on that.
func drainBriefly(conn net.Conn) {
	if conn.SetReadDeadline(time.Now().Add(10*time.Millisecond)) != nil {
		return
	}
	io.Copy(io.Discard, io.LimitReader(conn, 64<<10))
}

// ensureConnected dials and synchronises when there is no connection.
func (c *Client) ensureConnected(ctx context.Context, s *session) error {
	if c.conn != nil {
		return c.conn.SetDeadline(s.deadline)
	}
	dctx, cancel := context.WithDeadline(ctx, s.deadline)
	defer cancel()
	conn, err := c.opts.Dial(dctx)
	if err != nil {
		return fmt.Errorf("connect to the guest agent at %s (is the VM running with an agent channel?): %w", c.path, err)
	}
	c.mu.Lock()
	c.live = conn
	c.mu.Unlock()
	c.budget += int64(c.opts.MaxReply) + smallReply + budgetSlack
	c.conn = conn
	c.fr = frame.NewReader(&countingReader{c: c, r: conn}, min(smallReply, c.opts.MaxReply))
	if err := conn.SetDeadline(s.deadline); err != nil {
		return fmt.Errorf("set deadline on the guest agent connection: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if err := s.sync(); err != nil {
		return err
	}
	return nil
}

// countingReader notes that the agent sent something, and cuts a call
// short once the agent has sent more than the call can legitimately need
// (its byte budget): a guest flooding garbage then costs the host a little
// parsing per call, not a core for the whole call timeout.
type countingReader struct {
	c *Client
	r io.Reader
}

// errFlood ends a call whose agent sent more than its budget.
var errFlood = errors.New("the guest agent sent far more data than a reply needs (garbage flood?)")

func (r *countingReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	if n > 0 {
		r.c.mu.Lock()
		r.c.stats.Received = true
		r.c.mu.Unlock()
		r.c.used += int64(n)
		if err == nil && r.c.used > r.c.budget {
			err = errFlood
		}
	}
	return n, err
}

// Byte budgets of a call: what its replies may take, plus slack for stray
// bytes; a connect may first meet the tail of a reply to an abandoned call.
const budgetSlack = 64 << 10

func (s *session) write(req qgaproto.Request) error {
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode %s request: %w", req.Execute, err)
	}
	if _, err := s.c.conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("send %s to the guest agent: %w", req.Execute, err)
	}
	return nil
}

// readReply reads the next reply object and returns its return value, or
// the agent's *Error.
func (s *session) readReply(execute string) (json.RawMessage, error) {
	for {
		kind, obj, err := s.c.fr.Next()
		if err != nil {
			return nil, fmt.Errorf("read the reply to %s from the guest agent: %w", execute, err)
		}
		switch kind {
		case frame.Object:
			ret, err := parseReply(obj)
			if err != nil {
				var qe *qgaproto.Error
				if errors.As(err, &qe) {
					return nil, err
				}
				return nil, fmt.Errorf("reply to %s: %w", execute, err)
			}
			return ret, nil
		case frame.TooLarge:
			return nil, fmt.Errorf("reply to %s is larger than the limit: refused", execute)
		case frame.Invalid:
			return nil, fmt.Errorf("reply to %s is not valid JSON", execute)
		case frame.Delimiter:
			// A stray sentinel: keep reading.
		}
	}
}

// parseReply decodes one reply object: the return value, or the agent's
// error as *Error.
func parseReply(obj []byte) (json.RawMessage, error) {
	var r qgaproto.Reply
	if err := json.Unmarshal(obj, &r); err != nil {
		return nil, fmt.Errorf("malformed reply: %w", err)
	}
	if r.Error != nil {
		if r.Error.Class == "" {
			r.Error.Class = qgaproto.ClassGenericError
		}
		return nil, r.Error
	}
	if r.Return == nil {
		return nil, fmt.Errorf("malformed reply: neither return nor error")
	}
	return r.Return, nil
}

// largeReplies are the commands whose replies may reach MaxReply.
var largeReplies = map[string]bool{"guest-exec-status": true, "guest-file-read": true, qgaproto.ExecReadCommand: true}

// replyLimit sets the reply size limit for a command.
func (s *session) replyLimit(execute string) {
	limit := min(smallReply, s.c.opts.MaxReply)
	if largeReplies[execute] {
		limit = s.c.opts.MaxReply
	}
	s.c.fr.SetLimit(limit)
	s.c.budget += 2*int64(limit) + budgetSlack
}

// call sends one command and reads its reply on a session.
func (s *session) call(execute string, args any, out any) error {
	s.replyLimit(execute)
	if err := s.write(qgaproto.Request{Execute: execute, Arguments: args}); err != nil {
		return err
	}
	ret, err := s.readReply(execute)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(ret, out); err != nil {
		return fmt.Errorf("decode the reply to %s: %w", execute, err)
	}
	return nil
}

// Call runs one QGA command and decodes its return value into out (which
// may be nil). An error reply from the agent is returned as *Error.
func (c *Client) Call(ctx context.Context, execute string, args any, out any) error {
	return c.do(ctx, c.opts.CallTimeout, func(s *session) error {
		return s.call(execute, args, out)
	})
}

package cmdsock

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// DefaultPath is where mb-agent's command socket lives unless told otherwise.
const DefaultPath = "/run/mb-agent/commands.sock"

// The status codes the server itself answers with; they are the reference
// command monitor's, so its clients read them unchanged.
const (
	// CodeNoHandler: no handler is registered for the request's command.
	CodeNoHandler = 101
	// CodeBadRequest: the request is not one valid JSON object, or is over
	// MaxRequest bytes.
	CodeBadRequest = 102
	// CodeConn: the connection failed, or the peer is not allowed.
	CodeConn = 103
	// CodeTimeout: no complete request arrived before the timeout.
	CodeTimeout = 104
	// CodeHandler: the handler returned an error (its text is the message).
	CodeHandler = 105
	// CodeInternal: the server could not build its reply.
	CodeInternal = 106
)

// MaxRequest is the largest request the server reads, in bytes.
const MaxRequest = 1 << 20

// DefaultTimeout is how long a client has to send its request.
const DefaultTimeout = 10 * time.Second

// defaultMaxConns bounds the connections served at once.
const defaultMaxConns = 32

// Options configures a Server.
type Options struct {
	// Path of the socket; DefaultPath when empty.
	Path string
	// Group (a name or a numeric gid) whose members may use the socket, as
	// well as root. Empty means gid 0.
	Group string
	// Timeout for the client to send a complete request; DefaultTimeout
	// when zero.
	Timeout time.Duration
	// MaxConns bounds the connections served at once (32 when zero); more
	// wait in the kernel's backlog.
	MaxConns int
	// Logger receives the server's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Server serves a Registry's handlers on a unix socket.
type Server struct {
	reg      *Registry
	path     string
	gid      int
	timeout  time.Duration
	maxConns int
	log      *slog.Logger
}

// NewServer returns a server for reg. Only one server may watch a registry.
// It resolves opts.Group now, so a group that does not exist is an error
// here rather than at the first connection.
func NewServer(reg *Registry, opts Options) (*Server, error) {
	s := &Server{reg: reg, path: opts.Path, timeout: opts.Timeout, maxConns: opts.MaxConns, log: opts.Logger}
	if s.path == "" {
		s.path = DefaultPath
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	if s.maxConns <= 0 {
		s.maxConns = defaultMaxConns
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "cmdsock", "socket", s.path)
	gid, err := lookupGroup(opts.Group)
	if err != nil {
		return nil, err
	}
	s.gid = gid
	return s, nil
}

// Path returns the socket's path.
func (s *Server) Path() string { return s.path }

// Run serves until ctx ends, then removes the socket and returns
// ctx.Err(). The socket exists only while the registry holds at least one
// handler: Run listens when the first is registered and stops listening
// (removing the socket) when the last is unregistered. It returns another
// error when the socket cannot be created.
func (s *Server) Run(ctx context.Context) error {
	var cur *listening
	defer func() {
		if cur != nil {
			cur.stop()
		}
	}()
	for {
		want := s.reg.Len() > 0
		switch {
		case want && cur == nil:
			ln, err := listen(s.path, s.gid)
			if err != nil {
				return err
			}
			cur = s.start(ctx, ln)
			s.log.Info("command socket listening", "gid", s.gid, "commands", s.reg.Names())
		case !want && cur != nil:
			cur.stop()
			cur = nil
			s.log.Info("command socket closed: no handlers left")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.reg.changed:
		}
	}
}

// listening is one period during which the socket exists.
type listening struct {
	ln     *net.UnixListener
	path   string
	info   os.FileInfo // the socket file this period created
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (s *Server) start(ctx context.Context, ln *net.UnixListener) *listening {
	ctx, cancel := context.WithCancel(ctx)
	l := &listening{ln: ln, path: s.path, cancel: cancel}
	l.info, _ = os.Lstat(s.path)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		s.acceptLoop(ctx, ln, &l.wg)
	}()
	return l
}

// stop closes the listener, waits for the connections in flight and
// removes the socket file if it is still the one this period created.
func (l *listening) stop() {
	l.cancel()
	l.ln.Close()
	l.wg.Wait()
	if fi, err := os.Lstat(l.path); err == nil && l.info != nil && os.SameFile(fi, l.info) {
		os.Remove(l.path)
	}
}

func (s *Server) acceptLoop(ctx context.Context, ln *net.UnixListener, wg *sync.WaitGroup) {
	sem := make(chan struct{}, s.maxConns)
	for {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		c, err := ln.AcceptUnix()
		if err != nil {
			<-sem
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			s.log.Warn("accept failed", "err", err)
			if !sleepCtx(ctx, 100*time.Millisecond) {
				return
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.serveConn(ctx, c)
		}()
	}
}

// serveConn answers the one request of c and closes it.
func (s *Server) serveConn(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	// The whole exchange, reply included, ends when ctx does.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	resp := s.handle(ctx, c)
	c.SetWriteDeadline(time.Now().Add(s.timeout))
	if _, err := c.Write(resp); err != nil {
		s.log.Debug("reply not delivered", "err", err)
		return
	}
	// Closing with unread input makes the kernel reset the connection, and
	// the client may then lose the reply. Signal EOF, then read (and drop)
	// what the client still sends, briefly and boundedly.
	c.CloseWrite()
	c.SetReadDeadline(time.Now().Add(drainTime))
	io.Copy(io.Discard, io.LimitReader(c, drainBytes))
}

// How long and how much serveConn reads after its reply before closing.
const (
	drainTime  = time.Second
	drainBytes = 4 << 20
)

// handle reads and answers the request of c, returning the encoded reply.
func (s *Server) handle(ctx context.Context, c *net.UnixConn) []byte {
	peer, err := peerOf(c)
	if err != nil {
		return errorReply(CodeConn, "connection error: reading the peer's credentials: "+err.Error())
	}
	if err := s.allowed(peer); err != nil {
		s.log.Warn("peer refused", "pid", peer.PID, "uid", peer.UID, "gid", peer.GID)
		return errorReply(CodeConn, err.Error())
	}
	c.SetReadDeadline(time.Now().Add(s.timeout))
	raw, code, msg := readRequest(c)
	if code != 0 {
		s.log.Debug("bad request", "status", code, "message", msg, "pid", peer.PID)
		return errorReply(code, msg)
	}
	req, code, msg := parseRequest(raw)
	if code != 0 {
		return errorReply(code, msg)
	}
	req.Peer = peer
	h, ok := s.reg.Lookup(req.Command)
	if !ok {
		return errorReply(CodeNoHandler, fmt.Sprintf("no handler for command %q", req.Command))
	}
	hctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	reply, err := call(hctx, h, req)
	if err != nil {
		var pe panicError
		if errors.As(err, &pe) {
			s.log.Error("handler panicked", "command", req.Command, "panic", pe.v)
			return errorReply(CodeInternal, fmt.Sprintf("internal error: the handler of %q failed unexpectedly", req.Command))
		}
		return errorReply(CodeHandler, err.Error())
	}
	return encodeReply(reply)
}

// allowed lets in root, the server's own uid, and members of its group.
func (s *Server) allowed(p Peer) error {
	if p.UID == 0 || p.UID == os.Getuid() || p.GID == s.gid {
		return nil
	}
	if groups, err := supplementaryGroups(p.PID); err == nil {
		for _, g := range groups {
			if g == s.gid {
				return nil
			}
		}
	}
	return fmt.Errorf("permission denied: uid %d is neither root nor a member of group %d", p.UID, s.gid)
}

// errTooLarge marks a request over MaxRequest.
var errTooLarge = errors.New("request too large")

// limitReader fails with errTooLarge once more than max bytes are wanted.
type limitReader struct {
	r   io.Reader
	n   int
	max int
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n >= l.max {
		return 0, errTooLarge
	}
	if len(p) > l.max-l.n {
		p = p[:l.max-l.n]
	}
	n, err := l.r.Read(p)
	l.n += n
	return n, err
}

// readRequest reads one JSON value from r, stopping at its end: the client
// need not close its side. It returns a status code and message on failure.
func readRequest(r io.Reader) (json.RawMessage, int, string) {
	lr := &limitReader{r: r, max: MaxRequest}
	dec := json.NewDecoder(lr)
	var raw json.RawMessage
	err := dec.Decode(&raw)
	switch {
	case err == nil:
		return raw, 0, ""
	case errors.Is(err, errTooLarge):
		return nil, CodeBadRequest, fmt.Sprintf("request over %d bytes", MaxRequest)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, CodeTimeout, "no complete request before the timeout"
	case errors.Is(err, io.EOF) && lr.n == 0:
		return nil, CodeConn, "connection error: closed before a request"
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return nil, CodeBadRequest, "not valid JSON: the request ends early"
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return nil, CodeBadRequest, "not valid JSON: " + err.Error()
	}
	return nil, CodeConn, "connection error: " + err.Error()
}

// parseRequest checks that raw is an object and finds its command.
func parseRequest(raw json.RawMessage) (*Request, int, string) {
	if t := bytes.TrimLeft(raw, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return nil, CodeBadRequest, "not valid JSON: the request must be a JSON object"
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, CodeBadRequest, "not valid JSON: " + err.Error()
	}
	name, ok := fields["Command"]
	if !ok {
		name, ok = fields["Name"]
	}
	var cmd string
	if ok {
		if err := json.Unmarshal(name, &cmd); err != nil {
			return nil, CodeBadRequest, "not valid JSON: Command must be a string"
		}
	}
	return &Request{Command: cmd, Raw: raw}, 0, ""
}

// panicError carries a handler's panic value.
type panicError struct{ v any }

func (p panicError) Error() string { return fmt.Sprint("panic: ", p.v) }

// call runs h, turning a panic into a panicError.
func call(ctx context.Context, h Handler, req *Request) (reply Reply, err error) {
	defer func() {
		if v := recover(); v != nil {
			reply, err = nil, panicError{v}
		}
	}()
	return h(ctx, req)
}

// encodeReply adds the status fields a handler left out and encodes reply.
func encodeReply(reply Reply) []byte {
	out := make(map[string]any, len(reply)+2)
	for k, v := range reply {
		out[k] = v
	}
	if _, ok := out["Status"]; !ok {
		out["Status"] = 0
	}
	if _, ok := out["StatusMessage"]; !ok {
		out["StatusMessage"] = ""
	}
	b, err := json.Marshal(out)
	if err != nil {
		return errorReply(CodeInternal, "internal error: encoding the reply: "+err.Error())
	}
	return b
}

// errorReply encodes a reply with only a status and its message.
func errorReply(code int, msg string) []byte {
	b, _ := json.Marshal(struct {
		Status        int
		StatusMessage string
	}{code, msg})
	return b
}

// sleepCtx waits for d or until ctx is done; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

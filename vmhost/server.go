package vmhost

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mbvm/mb/internal/atomicfile"
	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/internal/sockfile"
)

// drainTimeout bounds how long Run waits for requests in flight after the VM
// exited or the context was cancelled, before cancelling them.
const drainTimeout = 10 * time.Second

// Connection limits of a Server.
const (
	// MaxConns is how many connections a server keeps open at once. When
	// a new one arrives at the cap, the connection idle (or trickling a
	// request) the longest is closed to make room; when every connection
	// is running a request, the new one is refused with CodeBusy.
	MaxConns = 128
	// IdleTimeout closes a connection that sends no request for this long.
	IdleTimeout = time.Minute
	// ReadTimeout bounds reading one request once its first byte arrived.
	ReadTimeout = 10 * time.Second
	// writeTimeout bounds writing one reply (exec replies can be large).
	writeTimeout = time.Minute
	// acceptBackoffMax caps the pause after failing accepts; acceptLogEvery
	// spaces the log lines about them.
	acceptBackoffMax = time.Second
	acceptLogEvery   = 10 * time.Second
)

// connPhase is what a connection is doing, for the choice of which one to
// close when the server is full.
type connPhase int

const (
	phaseIdle     connPhase = iota // waiting for a request
	phaseReading                   // a request has started arriving
	phaseHandling                  // a request is being answered
)

// connState is a tracked connection's phase and since when.
type connState struct {
	phase connPhase
	since time.Time
}

// Server answers the control protocol on a unix socket for one VM.
type Server struct {
	socketPath string
	pidPath    string
	controller VMController
	logger     *log.Logger

	started time.Time
	name    string

	// Connection limits (MaxConns, IdleTimeout, ReadTimeout unless a test
	// lowered them).
	maxConns    int
	idleTimeout time.Duration
	readTimeout time.Duration

	mu      sync.Mutex
	conns   map[net.Conn]*connState
	closing bool // Run is shutting down: no new requests are read
	// stopSem serialises stop and force_stop so that concurrent requests
	// do not race through the backend's phases; the later caller waits
	// (within its own budget) and then sees the VM down.
	stopSem chan struct{}
	// drainSem bounds the refused connections being drained at once.
	drainSem chan struct{}
}

// NewServer returns a server for controller that will listen on socketPath
// and record its PID in pidPath. A nil logger discards logs; bridge a slog
// logger with slog.NewLogLogger.
func NewServer(socketPath, pidPath string, controller VMController, logger *log.Logger) *Server {
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	return &Server{
		socketPath: socketPath,
		pidPath:    pidPath,
		controller: controller,
		logger:     logger,
		conns:      make(map[net.Conn]*connState),
		maxConns:   MaxConns,

		idleTimeout: IdleTimeout,
		readTimeout: ReadTimeout,
		stopSem:     make(chan struct{}, 1),
		drainSem:    make(chan struct{}, 64),
		name:        filepath.Base(filepath.Dir(socketPath)),
	}
}

// Run writes the PID file, listens on the socket (mode 0600; peers of
// another uid are refused) and serves until ctx is cancelled or the controller's
// Wait returns. Replies in flight are written before Run returns, and the
// socket and PID file are removed on the way out, even on error. Run returns
// an error only when the server itself failed; how the VM ended is for the
// caller to learn from the controller's Wait.
func (s *Server) Run(ctx context.Context) (err error) {
	s.started = time.Now()
	// The PID file comes first, so a client that finds the socket also
	// finds the PID.
	if s.pidPath != "" {
		defer os.Remove(s.pidPath)
		if err := atomicfile.Write(s.pidPath, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
			return fmt.Errorf("write PID file: %w", err)
		}
	}
	ln, err := listenUnix(s.socketPath)
	if err != nil {
		return err
	}
	defer os.Remove(s.socketPath)

	reqCtx, cancelReqs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelReqs()
	var wg sync.WaitGroup
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		s.acceptLoop(reqCtx, ln, &wg)
	}()

	vmDone := make(chan struct{})
	go func() {
		_ = s.controller.Wait()
		close(vmDone)
	}()
	select {
	case <-ctx.Done():
		s.logger.Printf("vmhost server: context done, shutting down")
	case <-vmDone:
		s.logger.Printf("vmhost server: VM exited, shutting down")
	}

	ln.Close()
	<-acceptDone
	s.closeIdle()
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(drainTimeout):
		s.logger.Printf("vmhost server: requests still running after %s, cancelling them", drainTimeout)
		cancelReqs()
		s.closeAll()
		<-drained
	}
	return nil
}

// listenUnix binds the socket 0600 without a moment of looser
// permissions (see internal/sockfile).
func listenUnix(path string) (*net.UnixListener, error) {
	return sockfile.Listen(path, 0o600)
}

func (s *Server) acceptLoop(ctx context.Context, ln *net.UnixListener, wg *sync.WaitGroup) {
	var (
		backoff  time.Duration
		failures int
		lastLog  time.Time
	)
	for {
		conn, err := ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors (or another transient failure): make
			// room by closing the longest-idle connection, and back off
			// instead of spinning and logging in a tight loop.
			s.evict(true)
			failures++
			if time.Since(lastLog) >= acceptLogEvery {
				s.logger.Printf("vmhost server: accept failed %d times since the last report: %v (backing off)", failures, err)
				lastLog, failures = time.Now(), 0
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), acceptBackoffMax)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if err := checkPeerConn(conn); err != nil {
			s.logger.Printf("vmhost server: refused connection: %v", err)
			s.refuse(conn, errorReply(CodeForbidden, "%v", err))
			continue
		}
		if !s.admit(conn) {
			s.refuse(conn, errorReply(CodeBusy, "vmhost is busy: %d connections are running requests, the most it serves at once; retry shortly", s.maxConns))
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.track(conn, false)
			defer conn.Close()
			s.serveConn(ctx, conn)
		}()
	}
}

// refuse answers a connection that will not be served and closes it. The
// client's request is usually already in the socket: closing with unread
// input makes the kernel reset the connection, and the client would see
// "connection reset" instead of the refusal. So the input is read and
// dropped (briefly, in the background, a bounded number at a time) before
// the close.
func (s *Server) refuse(conn net.Conn, r *Response) {
	_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
	_ = writeResponse(conn, r)
	select {
	case s.drainSem <- struct{}{}:
	default:
		conn.Close() // too many refusals at once: no courtesy
		return
	}
	go func() {
		defer func() { <-s.drainSem }()
		if uc, ok := conn.(*net.UnixConn); ok {
			_ = uc.CloseWrite()
		}
		_ = conn.SetReadDeadline(time.Now().Add(refuseDrain))
		_, _ = io.Copy(io.Discard, io.LimitReader(conn, MaxRequestSize))
		conn.Close()
	}()
}

// refuseDrain is how long a refused connection's input is read before it
// is closed anyway.
const refuseDrain = 500 * time.Millisecond

// admit tracks a new connection, closing the longest-idle one when the
// server is full. It reports false when every tracked connection is
// running a request.
func (s *Server) admit(c net.Conn) bool {
	s.mu.Lock()
	full := len(s.conns) >= s.maxConns
	s.mu.Unlock()
	if full && !s.evict(false) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns[c] = &connState{phase: phaseIdle, since: time.Now()}
	return true
}

// evict closes the connection that has waited for a request the longest,
// or else the one that has trickled a request the longest. A connection
// running a request is never closed (unless its client hung up), nor one that looks idle but whose
// request already waits unread in the socket (its goroutine has not been
// scheduled yet): that is a client about to be served, and closing it
// with unread input would reset it. Connections younger than minEvictIdle
// are spared too, unless urgent: out of descriptors, the server must make
// room to accept at all. It reports whether it closed one.
func (s *Server) evict(urgent bool) bool {
	s.mu.Lock()
	skip := map[net.Conn]bool{}
	for tries := 0; tries < maxEvictTries; tries++ {
		var victim net.Conn
		var best *connState
		for c, st := range s.conns {
			if st.phase == phaseHandling || skip[c] {
				continue
			}
			if best == nil || st.phase < best.phase || (st.phase == best.phase && st.since.Before(best.since)) {
				victim, best = c, st
			}
		}
		if victim == nil {
			break
		}
		// Too young to tell from a client that is about to write, or
		// has just begun to: spare it.
		pending, hungUp := inputState(victim)
		// A connection whose client hung up is dead whatever its age (its
		// goroutine has not seen the EOF yet); one with a request waiting
		// is about to be served; a young one may be about to write.
		if !hungUp && ((best.phase == phaseIdle && pending > 0) || (!urgent && time.Since(best.since) < minEvictIdle)) {
			skip[victim] = true
			continue
		}
		delete(s.conns, victim)
		s.mu.Unlock()
		victim.Close()
		return true
	}
	// Last, a connection still running a request whose client has hung
	// up: its reply has nowhere to go, and it would hold the slot until
	// its goroutine notices. Its request goes on.
	for c, st := range s.conns {
		if st.phase != phaseHandling {
			continue
		}
		if _, hungUp := inputState(c); hungUp {
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
			return true
		}
	}
	s.mu.Unlock()
	return false
}

// minEvictIdle is how long a connection must have waited for a request
// (or trickled one) before it may be closed to make room: a client that
// just connected has not written yet, and an idle or trickling connection
// is one that stays so. When
// none qualifies, the newcomer is refused as busy, and clients retry.
const minEvictIdle = 500 * time.Millisecond

// maxEvictTries bounds how many connections evict inspects for unread
// input before it gives up making room.
const maxEvictTries = 16

// inputState tells, without reading, how many bytes wait unread in c's
// socket and whether its peer has hung up (readable, with nothing to read:
// an EOF). A connection already closed (its goroutine is on its way out)
// counts as hung up.
func inputState(c net.Conn) (pending int, hungUp bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, true
	}
	err = raw.Control(func(fd uintptr) {
		pending, _ = unix.IoctlGetInt(int(fd), ioctlInq)
		if pending > 0 {
			return
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(pfd, 0); err == nil && n > 0 && pfd[0].Revents&(unix.POLLIN|unix.POLLHUP) != 0 {
			hungUp = true
		}
	})
	if err != nil {
		return 0, true
	}
	return pending, hungUp
}

func (s *Server) track(c net.Conn, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		s.conns[c] = &connState{phase: phaseIdle, since: time.Now()}
	} else {
		delete(s.conns, c)
	}
}

// setPhase records what c is doing. It reports false when c should stop
// reading requests: the server is shutting down, or c was evicted.
func (s *Server) setPhase(c net.Conn, p connPhase) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.conns[c]
	if !ok || (s.closing && p != phaseHandling) {
		return false
	}
	st.phase, st.since = p, time.Now()
	return true
}

// closeIdle unblocks connections waiting for their next request; a handler
// in the middle of a request finishes it and writes its reply first.
func (s *Server) closeIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	for c, st := range s.conns {
		if st.phase != phaseHandling {
			_ = c.SetReadDeadline(time.Now())
		}
	}
}

func (s *Server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

// serveConn answers requests on one connection, in order. A connection
// that sends nothing for idleTimeout, or takes over readTimeout to send a
// request it started, is closed.
func (s *Server) serveConn(ctx context.Context, conn net.Conn) {
	r := bufio.NewReaderSize(conn, 4<<10)
	for {
		if !s.setPhase(conn, phaseIdle) {
			return
		}
		_ = conn.SetReadDeadline(time.Now().Add(s.idleTimeout))
		if _, err := r.Peek(1); err != nil {
			return // EOF, idle, deadline at shutdown, or a broken peer
		}
		if !s.setPhase(conn, phaseReading) {
			return
		}
		_ = conn.SetReadDeadline(time.Now().Add(s.readTimeout))
		line, err := readLine(r, MaxRequestSize)
		if errors.Is(err, errLineTooLong) {
			s.reply(conn, errorReply(CodeTooLarge, "request line over %d bytes refused; closing the connection", MaxRequestSize))
			return
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			s.reply(conn, errorReply(CodeTimeout, "request not complete within %s; closing the connection", s.readTimeout))
			return
		}
		if err != nil {
			return
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if !s.setPhase(conn, phaseHandling) {
			return
		}
		// The read deadline stays for an exec's stdin chunks, which are
		// part of the request; handleConnLine lifts it once they are in.
		resp := s.handleConnLine(ctx, conn, r, line)
		if resp == nil {
			return // a streamed exec took the connection
		}
		if err := s.reply(conn, resp); err != nil {
			return
		}
	}
}

// reply writes r within writeTimeout.
func (s *Server) reply(conn net.Conn, r *Response) error {
	_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return writeResponse(conn, r)
}

// handleLine decodes and dispatches one request line.
func (s *Server) handleLine(ctx context.Context, line []byte) *Response {
	req, err := DecodeRequest(line)
	if err != nil {
		return errorReply(CodeBadRequest, "%v", err)
	}
	return s.Handle(ctx, req)
}

// DecodeRequest parses one request line. It rejects anything but a single
// JSON object with a method, and unknown fields, with an error that says
// what is wrong.
func DecodeRequest(line []byte) (*Request, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var req Request
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("malformed request: %v (send one JSON object per line, for example {\"method\":\"status\"})", err)
	}
	if dec.More() {
		return nil, errors.New(`malformed request: trailing data after the JSON object (send one JSON object per line)`)
	}
	if req.Method == "" {
		return nil, errors.New(`malformed request: missing "method" (one of status, stop, force_stop, info, exec, metrics)`)
	}
	if req.TimeoutSeconds < 0 {
		return nil, fmt.Errorf("bad timeout_seconds %d: must be 0 (default) or positive", req.TimeoutSeconds)
	}
	return &req, nil
}

// Handle answers one decoded request. It is exported so that callers (and
// tests) can drive the dispatch without a socket.
func (s *Server) Handle(ctx context.Context, req *Request) *Response {
	switch req.Method {
	case MethodStatus:
		if m, ok := s.controller.(GuestMessenger); ok && req.AgentPoll {
			m.PollAgent()
		}
		return s.status()
	case MethodInfo:
		return s.info()
	case MethodStop:
		return s.stop(ctx, req)
	case MethodForceStop:
		return s.forceStop(ctx)
	case MethodExec:
		return s.exec(ctx, req)
	case MethodMetrics:
		return s.metrics(ctx, req)
	case MethodMessages:
		return s.messages(req)
	case MethodSuspend:
		return s.suspend(ctx, req) // snapshot.go
	case MethodSnapshot:
		return s.snapshot(ctx, req)
	}
	return errorReply(CodeUnknownMethod, "unknown method %q: accepted methods are status, stop, force_stop, info, exec, metrics, messages, suspend, snapshot", req.Method)
}

// errorReply is an ok:false reply with a code and a message for people.
func errorReply(code, format string, args ...any) *Response {
	return &Response{Error: fmt.Sprintf(format, args...), Code: code}
}

func (s *Server) base() *Response {
	c := s.controller
	r := &Response{OK: true, State: c.State(), SSHPort: c.SSHPort(), Backend: c.Backend()}
	if a, ok := c.(AgentReporter); ok {
		r.Agent = a.AgentInfo()
	}
	return r
}

func (s *Server) status() *Response { return s.base() }

func (s *Server) info() *Response {
	r := s.base()
	r.Name = s.name
	r.PID = os.Getpid()
	r.Paths = map[string]string{layout.PathVMHostSocket: s.socketPath}
	started := s.started
	if d, ok := s.controller.(Describer); ok {
		desc := d.Describe()
		if desc.Name != "" {
			r.Name = desc.Name
		}
		if !desc.StartedAt.IsZero() {
			started = desc.StartedAt
		}
		r.Details = desc.Details
		for k, p := range desc.Paths {
			r.Paths[k] = p
		}
	}
	if !started.IsZero() {
		t := started.UTC()
		r.StartedAt = &t
		r.UptimeSeconds = time.Since(started).Round(time.Millisecond).Seconds()
	}
	return r
}

func (s *Server) stop(ctx context.Context, req *Request) *Response {
	arrived := time.Now()
	timeout := DefaultStopTimeout
	if req.TimeoutSeconds > 0 {
		timeout = time.Duration(req.TimeoutSeconds) * time.Second
	}
	ms, modal := s.controller.(ModeStopper)
	if !modal && req.Mode != "" && req.Mode != ModeAuto {
		return errorReply(CodeNotAvailable, "stop mode %q is not supported by the %s backend: use auto", req.Mode, s.controller.Backend())
	}
	budget := StopBudget(timeout)
	return s.bounded(ctx, MethodStop, arrived.Add(budget), func(ctx context.Context, left time.Duration) (StopResult, error) {
		if modal {
			return ms.StopMode(ctx, left, req.Mode)
		}
		return StopResult{}, s.controller.Stop(ctx, left)
	})
}

func (s *Server) forceStop(ctx context.Context) *Response {
	return s.bounded(ctx, MethodForceStop, time.Now().Add(ForceStopTimeout), func(ctx context.Context, _ time.Duration) (StopResult, error) {
		if fr, ok := s.controller.(ForceStopReporter); ok {
			return fr.ForceStopResult(ctx)
		}
		return StopResult{}, s.controller.ForceStop(ctx)
	})
}

// bounded runs a stop or force_stop so that its reply is written by
// deadline whatever the backend does: waiting for another stop counts
// against it, the backend is given what is left less a little slack for
// the reply, and a backend that overruns even that is answered for with a
// timeout while it goes on in the background (holding stopSem).
func (s *Server) bounded(ctx context.Context, m Method, deadline time.Time, run func(ctx context.Context, left time.Duration) (StopResult, error)) *Response {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	fail := func(code, format string, args ...any) *Response {
		r := errorReply(code, "%s: "+format, append([]any{m}, args...)...)
		r.State, r.Backend = s.controller.State(), s.controller.Backend()
		return r
	}
	select {
	case s.stopSem <- struct{}{}:
	case <-ctx.Done():
		return fail(CodeTimeout, "another stop of this VM was still running when this one's time ran out; check the state with status")
	}
	left := time.Until(deadline)
	left -= replySlack(left)
	type outcome struct {
		res StopResult
		err error
	}
	done := make(chan outcome, 1)
	// The backend's work does not end with this request (a stop that
	// overran finishes in the background), but it has the same deadline.
	bctx, bcancel := context.WithDeadline(context.WithoutCancel(ctx), time.Now().Add(left))
	go func() {
		defer func() { <-s.stopSem }()
		defer bcancel()
		res, err := run(bctx, left)
		done <- outcome{res, err}
	}()
	select {
	case o := <-done:
		if o.err != nil {
			return fail(ErrorCode(o.err), "%v", o.err)
		}
		r := s.base()
		r.StoppedBy = o.res.StoppedBy
		return r
	case <-ctx.Done():
		s.logger.Printf("vmhost server: %s overran its budget; the backend goes on in the background", m)
		return fail(CodeTimeout, "the %s backend did not finish within the time given (it goes on in the background); check the state with status", s.controller.Backend())
	}
}

// replySlack is the part of a stop's remaining budget kept for writing the
// reply: 2 %, between 20 and 200 ms.
func replySlack(left time.Duration) time.Duration {
	return min(max(left/50, 20*time.Millisecond), 200*time.Millisecond)
}

func (s *Server) metrics(ctx context.Context, req *Request) *Response {
	mr, ok := s.controller.(MetricsReporter)
	if !ok {
		return &Response{Code: CodeNotAvailable, Error: fmt.Sprintf("metrics are not available: the %s backend has no guest agent channel", s.controller.Backend())}
	}
	timeout := 10 * time.Second
	if req.TimeoutSeconds > 0 {
		timeout = time.Duration(req.TimeoutSeconds) * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	m, err := mr.Metrics(ctx)
	if err != nil {
		return errorReply(ErrorCode(err), "metrics: %v", err)
	}
	return &Response{OK: true, Metrics: m}
}

func writeResponse(w io.Writer, r *Response) error {
	b, err := json.Marshal(r)
	if err != nil {
		b, _ = json.Marshal(errorReply(CodeFailed, "encode reply: %v", err))
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

var errLineTooLong = errors.New("line too long")

// readLine reads one '\n'-terminated line of at most max bytes (newline
// included). A longer line returns errLineTooLong without reading the rest.
// A final line without newline at EOF is returned as a line.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(buf)+len(chunk) > max {
			return nil, errLineTooLong
		}
		buf = append(buf, chunk...)
		switch {
		case err == nil:
			return buf, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(buf) > 0:
			return buf, nil
		default:
			return nil, err
		}
	}
}

// messages answers MethodMessages from the controller's collected guest
// messages.
func (s *Server) messages(req *Request) *Response {
	m, ok := s.controller.(GuestMessenger)
	if !ok {
		return errorReply(CodeNotAvailable, "messages: this VM's backend has no guest agent that collects messages")
	}
	r := s.base()
	r.Messages, r.MessagesSeq = m.GuestMessages(req.After)
	return r
}

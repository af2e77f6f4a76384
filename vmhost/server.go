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
	"time"

	"github.com/mbvm/mb/internal/atomicfile"
)

// drainTimeout bounds how long Run waits for requests in flight after the VM
// exited or the context was cancelled, before cancelling them.
const drainTimeout = 10 * time.Second

// Server answers the control protocol on a unix socket for one VM.
type Server struct {
	socketPath string
	pidPath    string
	controller VMController
	logger     *log.Logger

	started time.Time
	name    string

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	// stopMu serialises stop and force_stop so that concurrent requests
	// do not race through the backend's phases; the later caller waits
	// and then sees the VM down.
	stopMu sync.Mutex
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
		conns:      make(map[net.Conn]struct{}),
		name:       filepath.Base(filepath.Dir(socketPath)),
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

// listenUnix binds the socket under a temporary name, restricts it to 0600
// and renames it into place, so the socket is never reachable with looser
// permissions. A stale socket at path is replaced.
func listenUnix(path string) (*net.UnixListener, error) {
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	_ = os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("chmod socket %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("move socket into place at %s: %w", path, err)
	}
	return ln, nil
}

func (s *Server) acceptLoop(ctx context.Context, ln *net.UnixListener, wg *sync.WaitGroup) {
	for {
		conn, err := ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.logger.Printf("vmhost server: accept: %v", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if err := checkPeerConn(conn); err != nil {
			s.logger.Printf("vmhost server: refused connection: %v", err)
			writeResponse(conn, &Response{OK: false, Error: err.Error()})
			conn.Close()
			continue
		}
		s.track(conn, true)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.track(conn, false)
			defer conn.Close()
			s.serveConn(ctx, conn)
		}()
	}
}

func (s *Server) track(c net.Conn, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
}

// closeIdle unblocks connections waiting for their next request; a handler
// in the middle of a request finishes it and writes its reply first.
func (s *Server) closeIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.SetReadDeadline(time.Now())
	}
}

func (s *Server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

// serveConn answers requests on one connection, in order.
func (s *Server) serveConn(ctx context.Context, conn net.Conn) {
	r := bufio.NewReaderSize(conn, 4<<10)
	for {
		line, err := readLine(r, MaxRequestSize)
		if errors.Is(err, errLineTooLong) {
			writeResponse(conn, &Response{Error: fmt.Sprintf("request line over %d bytes refused; closing the connection", MaxRequestSize)})
			return
		}
		if err != nil {
			return // EOF, deadline at shutdown, or a broken peer
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		resp := s.handleConnLine(ctx, conn, r, line)
		if err := writeResponse(conn, resp); err != nil {
			return
		}
	}
}

// handleLine decodes and dispatches one request line.
func (s *Server) handleLine(ctx context.Context, line []byte) *Response {
	req, err := DecodeRequest(line)
	if err != nil {
		return &Response{Error: err.Error()}
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
	}
	return &Response{Error: fmt.Sprintf("unknown method %q: accepted methods are status, stop, force_stop, info, exec, metrics, messages", req.Method)}
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
	}
	if !started.IsZero() {
		t := started.UTC()
		r.StartedAt = &t
		r.UptimeSeconds = time.Since(started).Round(time.Millisecond).Seconds()
	}
	return r
}

func (s *Server) stop(ctx context.Context, req *Request) *Response {
	timeout := DefaultStopTimeout
	if req.TimeoutSeconds > 0 {
		timeout = time.Duration(req.TimeoutSeconds) * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
	defer cancel()
	s.stopMu.Lock()
	defer s.stopMu.Unlock()
	var res StopResult
	var err error
	if ms, ok := s.controller.(ModeStopper); ok {
		res, err = ms.StopMode(ctx, timeout, req.Mode)
	} else {
		if req.Mode != "" && req.Mode != ModeAuto {
			return &Response{Error: fmt.Sprintf("stop mode %q is not supported by the %s backend: use auto", req.Mode, s.controller.Backend())}
		}
		err = s.controller.Stop(ctx, timeout)
	}
	if err != nil {
		return &Response{Error: fmt.Sprintf("stop: %v", err), State: s.controller.State(), Backend: s.controller.Backend()}
	}
	r := s.base()
	r.StoppedBy = res.StoppedBy
	return r
}

func (s *Server) forceStop(ctx context.Context) *Response {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s.stopMu.Lock()
	defer s.stopMu.Unlock()
	var res StopResult
	var err error
	if fr, ok := s.controller.(ForceStopReporter); ok {
		res, err = fr.ForceStopResult(ctx)
	} else {
		err = s.controller.ForceStop(ctx)
	}
	if err != nil {
		return &Response{Error: fmt.Sprintf("force_stop: %v", err), State: s.controller.State(), Backend: s.controller.Backend()}
	}
	r := s.base()
	r.StoppedBy = res.StoppedBy
	return r
}

func (s *Server) metrics(ctx context.Context, req *Request) *Response {
	mr, ok := s.controller.(MetricsReporter)
	if !ok {
		return &Response{Error: fmt.Sprintf("metrics are not available: the %s backend has no guest agent channel", s.controller.Backend()), Code: CodeNotAvailable}
	}
	timeout := 10 * time.Second
	if req.TimeoutSeconds > 0 {
		timeout = time.Duration(req.TimeoutSeconds) * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	m, err := mr.Metrics(ctx)
	if err != nil {
		return &Response{Error: fmt.Sprintf("metrics: %v", err)}
	}
	return &Response{OK: true, Metrics: m}
}

func writeResponse(w io.Writer, r *Response) error {
	b, err := json.Marshal(r)
	if err != nil {
		b, _ = json.Marshal(&Response{Error: fmt.Sprintf("encode reply: %v", err)})
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
		return &Response{Error: "messages: this VM's backend has no guest agent that collects messages", Code: CodeNotAvailable}
	}
	r := s.base()
	r.Messages, r.MessagesSeq = m.GuestMessages(req.After)
	return r
}

package vmhost

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
)

// Limits and knobs of exec.
const (
	// MaxExecStdin is the most stdin an exec request carries, in the
	// request line and the chunk lines after it together.
	MaxExecStdin = 16 << 20
	// ExecStdinChunk is how much stdin one chunk line carries; its base64
	// form keeps the line well under MaxRequestSize.
	ExecStdinChunk = 512 << 10
	// ExecTimeoutMargin is added to an exec's own timeout for the
	// client's deadline, so vmhost's answer (even a timeout) arrives first.
	ExecTimeoutMargin = 25 * time.Second
)

// Liveness probes of a waiting exec: the client asks vmhost for status on
// another connection every ProbeInterval, each probe given ProbeTimeout,
// and gives up after ProbeMisses probes in a row went unanswered.
const (
	ProbeInterval = 3 * time.Second
	ProbeTimeout  = 2 * time.Second
	ProbeMisses   = 3
)

// StdinChunk is one line that follows an exec request whose StdinFollows
// is set: the next piece of the command's stdin.
type StdinChunk struct {
	Stdin []byte `json:"stdin"`
}

// Reasons an Executor wraps with ErrExecStart, so that vmhost answers 127
// or 126 as a shell does.
var (
	// ErrExecNotFound: there is no such program in the guest (127).
	ErrExecNotFound = fmt.Errorf("%w: no such program", ErrExecStart)
	// ErrExecNotExecutable: the program cannot be executed (126).
	ErrExecNotExecutable = fmt.Errorf("%w: not executable", ErrExecStart)
)

// ErrExecStdinTooLarge is wrapped by an Executor whose guest agent cannot
// take that much stdin (stock qemu-ga takes one request's worth); vmhost
// answers it with CodeTooLarge.
var ErrExecStdinTooLarge = errors.New("stdin too large for the guest agent")

// ErrUnresponsive is returned (wrapped) by an exec call whose vmhost
// stopped answering status while the command ran.
var ErrUnresponsive = errors.New("vmhost does not answer")

// validateExec checks an exec request's arguments.
func validateExec(req *Request) error {
	if len(req.Argv) == 0 {
		return errors.New(`exec needs "argv": the command and its arguments, for example {"method":"exec","argv":["uname","-a"]}`)
	}
	if req.Argv[0] == "" {
		return errors.New(`exec: argv[0] is empty: give the program to run, for example {"method":"exec","argv":["uname","-a"]}`)
	}
	if req.StdinFollows < 0 || int64(len(req.Stdin))+req.StdinFollows > MaxExecStdin {
		return fmt.Errorf("exec: stdin of %d bytes refused: at most %d (16 MiB)", int64(len(req.Stdin))+max(req.StdinFollows, 0), MaxExecStdin)
	}
	return nil
}

// handleConnLine answers one request line read from conn; nil means the
// request took over the connection, which is then closed. An exec request
// reads the stdin chunks that follow it from r, and is cancelled when the
// peer hangs up; every other request goes to Handle.
func (s *Server) handleConnLine(ctx context.Context, conn net.Conn, r *bufio.Reader, line []byte) *Response {
	req, err := DecodeRequest(line)
	if err != nil {
		return &Response{Error: err.Error(), Code: CodeBadRequest}
	}
	if req.Method == MethodExecStream {
		s.execStream(ctx, conn, r, req)
		return nil
	}
	if req.Method != MethodExec {
		return s.Handle(ctx, req)
	}
	if err := validateExec(req); err != nil {
		return &Response{Error: err.Error(), Code: CodeBadRequest}
	}
	if req.StdinFollows > 0 {
		if err := readStdinChunks(r, req); err != nil {
			return &Response{Error: err.Error(), Code: CodeBadRequest}
		}
	}
	// The request is in: the exec may run for as long as it needs.
	_ = conn.SetReadDeadline(time.Time{})
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		// The client sends nothing more until the reply, so EOF or an
		// error means it went away. Peek leaves a pipelined request in r.
		// Once exec returned, the read deadline below ends the wait.
		if _, err := r.Peek(1); err != nil {
			cancel(fmt.Errorf("the client hung up: %w", err))
		}
	}()
	resp := s.exec(ctx, req)
	_ = conn.SetReadDeadline(time.Now())
	<-watched
	_ = conn.SetReadDeadline(time.Time{})
	return resp
}

// readStdinChunks appends the StdinFollows bytes sent in chunk lines to
// req.Stdin.
func readStdinChunks(r *bufio.Reader, req *Request) error {
	want := int64(len(req.Stdin)) + req.StdinFollows
	buf := make([]byte, 0, want)
	buf = append(buf, req.Stdin...)
	for int64(len(buf)) < want {
		line, err := readLine(r, MaxRequestSize)
		if err != nil {
			return fmt.Errorf("exec: read stdin chunk (%d of %d bytes received): %v", len(buf), want, err)
		}
		var c StdinChunk
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return fmt.Errorf(`exec: bad stdin chunk line: %v (send {"stdin":"<base64>"} lines after the request)`, err)
		}
		if int64(len(buf)+len(c.Stdin)) > want {
			return fmt.Errorf("exec: stdin chunks carry more than the %d bytes stdin_follows announced", req.StdinFollows)
		}
		if len(c.Stdin) == 0 {
			return errors.New("exec: empty stdin chunk: every chunk carries data")
		}
		buf = append(buf, c.Stdin...)
	}
	req.Stdin, req.StdinFollows = buf, 0
	return nil
}

func (s *Server) exec(ctx context.Context, req *Request) *Response {
	ex, ok := s.controller.(Executor)
	if !ok {
		return &Response{Error: fmt.Sprintf("exec is not available: the %s backend has no guest agent channel", s.controller.Backend()), Code: CodeNotAvailable}
	}
	if err := validateExec(req); err != nil {
		return &Response{Error: err.Error(), Code: CodeBadRequest}
	}
	if req.StdinFollows != 0 {
		return &Response{Error: "exec: stdin_follows is for a request read from the socket, with the chunk lines after it", Code: CodeBadRequest}
	}
	// No timeout unless the request has one: the command runs until it
	// exits or the client goes away.
	var timeout time.Duration
	if req.TimeoutSeconds > 0 {
		timeout = time.Duration(req.TimeoutSeconds) * time.Second
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout+10*time.Second)
		defer cancel()
	}
	res, err := ex.Exec(ctx, ExecRequest{Argv: req.Argv, Env: req.Env, Stdin: req.Stdin, Timeout: timeout})
	switch {
	case errors.Is(err, ErrExecStart):
		// Like a shell: 127 for a program that is not there, 126 else.
		code := 126
		if errors.Is(err, ErrExecNotFound) {
			code = 127
		}
		return &Response{OK: true, Code: CodeExecStart, ExitCode: &code, ExecError: err.Error()}
	case errors.Is(err, ErrExecTimeout):
		// A timed-out command still returns what it wrote before it was
		// killed.
		if res == nil {
			res = &ExecResult{ExitCode: 124}
		}
		code := res.ExitCode
		return &Response{OK: true, ExitCode: &code, Stdout: res.Stdout, Stderr: res.Stderr,
			OutTruncated: res.OutTruncated, ErrTruncated: res.ErrTruncated, TimedOut: true, ExecError: err.Error()}
	case errors.Is(err, ErrExecStdinTooLarge):
		return &Response{Error: fmt.Sprintf("exec: %v", err), Code: CodeTooLarge}
	case err != nil:
		return &Response{Error: fmt.Sprintf("exec: %v", err), Code: CodeFailed}
	case res == nil:
		return &Response{Error: "exec: the backend returned no result", Code: CodeFailed}
	}
	code := res.ExitCode
	return &Response{OK: true, ExitCode: &code, Stdout: res.Stdout, Stderr: res.Stderr,
		OutTruncated: res.OutTruncated, ErrTruncated: res.ErrTruncated}
}

// exec sends an exec request: stdin over ExecStdinChunk goes in chunk
// lines after the request line. Without a timeout the call has no
// deadline of its own; instead vmhost is probed for status on another
// connection while the command runs, and the call fails with
// ErrUnresponsive after ProbeMisses probes in a row went unanswered.
// Cancelling ctx hangs up, which makes vmhost cancel the command.
func (c *Client) exec(ctx context.Context, req Request) (*Response, error) {
	if len(req.Stdin) > MaxExecStdin {
		return nil, fmt.Errorf("exec: stdin of %d bytes refused: at most %d (16 MiB)", len(req.Stdin), MaxExecStdin)
	}
	d := net.Dialer{Timeout: DialTimeout}
	conn, err := d.DialContext(ctx, "unix", c.socketPath)
	if err != nil {
		return nil, fmt.Errorf("connect to vmhost at %s: %w (is the VM running?)", c.socketPath, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if req.TimeoutSeconds > 0 {
		var cancelT context.CancelFunc
		ctx, cancelT = context.WithTimeout(ctx, time.Duration(req.TimeoutSeconds)*time.Second+ExecTimeoutMargin)
		defer cancelT()
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	go c.probe(ctx, cancel)

	stdin := req.Stdin
	if len(stdin) > ExecStdinChunk {
		req.Stdin, req.StdinFollows = nil, int64(len(stdin))
	} else {
		stdin = nil
	}
	w := bufio.NewWriterSize(conn, 64<<10)
	if err := writeJSONLine(w, req); err != nil {
		return nil, c.execErr(ctx, "send exec", err)
	}
	for len(stdin) > 0 {
		n := min(len(stdin), ExecStdinChunk)
		if err := writeJSONLine(w, StdinChunk{Stdin: stdin[:n]}); err != nil {
			return nil, c.execErr(ctx, "send exec stdin", err)
		}
		stdin = stdin[n:]
	}
	if err := w.Flush(); err != nil {
		return nil, c.execErr(ctx, "send exec", err)
	}
	line, err := readLine(bufio.NewReaderSize(conn, 4<<10), MaxReplySize)
	if err != nil {
		if errors.Is(err, errLineTooLong) {
			return nil, fmt.Errorf("read exec reply from vmhost at %s: reply over %d bytes", c.socketPath, MaxReplySize)
		}
		return nil, c.execErr(ctx, "read exec reply", err)
	}
	return c.parseReply(req.Method, line)
}

func writeJSONLine(w *bufio.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// execErr words a failed exec call, naming why ctx ended when it did.
func (c *Client) execErr(ctx context.Context, what string, err error) error {
	if cause := context.Cause(ctx); cause != nil {
		return fmt.Errorf("%s from vmhost at %s: %w", what, c.socketPath, cause)
	}
	return fmt.Errorf("%s from vmhost at %s: %w", what, c.socketPath, err)
}

// probe asks vmhost for status every ProbeInterval until ctx ends, and
// cancels ctx with ErrUnresponsive after ProbeMisses misses in a row.
func (c *Client) probe(ctx context.Context, cancel context.CancelCauseFunc) {
	t := time.NewTicker(ProbeInterval)
	defer t.Stop()
	misses := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, pcancel := context.WithTimeout(ctx, ProbeTimeout)
		_, err := c.Call(pctx, Request{Method: MethodStatus})
		pcancel()
		if ctx.Err() != nil {
			return
		}
		var re *RemoteError
		if err == nil || errors.As(err, &re) {
			misses = 0
			continue
		}
		misses++
		if misses >= ProbeMisses {
			cancel(fmt.Errorf("%w: %d status probes in a row got no answer within %v (%v); the vmhost process may be hung: check `mb ls`, and `mb stop --force` the VM if it stays so",
				ErrUnresponsive, misses, ProbeTimeout, err))
			return
		}
	}
}

// parseReply decodes a reply line; ok:false comes with a *RemoteError.
func (c *Client) parseReply(method Method, line []byte) (*Response, error) {
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return nil, fmt.Errorf("bad %s reply from vmhost at %s: %w", method, c.socketPath, err)
	}
	if !resp.OK {
		msg := resp.Error
		if msg == "" {
			msg = "request failed without a message"
		}
		return &resp, &RemoteError{Socket: c.socketPath, Method: method, Message: msg, Code: resp.Code}
	}
	return &resp, nil
}

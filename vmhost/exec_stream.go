package vmhost

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// A streamed exec (MethodExecStream). The client sends the request line
// {"method":"exec_stream","argv":[...],"env":[...],"tty":true,"rows":24,"cols":80}
// and from then on both sides send StreamFrame lines on the connection:
//
//	client -> vmhost: {"stdin":"<base64>"}, {"eof":true}, {"rows":40,"cols":100}
//	vmhost -> client: {"started":true}, {"stdout":"<base64>"}, {"stderr":"<base64>"},
//	                  and last {"exit":N} or {"error":"...","code":"..."}
//
// vmhost closes the connection after the last frame. When the client hangs
// up first, the command's process group is killed in the guest. There is
// no time limit.

// StreamFrame is one line of a streamed exec, in either direction.
type StreamFrame struct {
	// From the client: stdin data, its end, a new terminal size.
	Stdin []byte `json:"stdin,omitempty"`
	EOF   bool   `json:"eof,omitempty"`
	Rows  uint16 `json:"rows,omitempty"`
	Cols  uint16 `json:"cols,omitempty"`

	// From vmhost: the command started, output, and the end.
	Started bool   `json:"started,omitempty"`
	Stdout  []byte `json:"stdout,omitempty"`
	Stderr  []byte `json:"stderr,omitempty"`
	// Exit is the command's exit code (128+signal when killed by one;
	// 127 or 126 with ExecError when the guest could not start it).
	Exit      *int   `json:"exit,omitempty"`
	ExecError string `json:"exec_error,omitempty"`
	// Error and Code end a stream that failed (Code as in Response).
	Error string `json:"error,omitempty"`
	Code  string `json:"code,omitempty"`
}

// MaxStreamStdin is the most stdin one client frame carries.
const MaxStreamStdin = 256 << 10

// StreamRequest is a command to run with its output streamed.
type StreamRequest struct {
	Argv, Env  []string
	TTY        bool
	Rows, Cols uint16
}

// StreamInput is stdin data, its end, or a terminal size (Rows, Cols).
type StreamInput struct {
	Data       []byte
	EOF        bool
	Rows, Cols uint16
}

// StreamHandlers receive what a streamed command does.
type StreamHandlers struct {
	Started func()
	Output  func(stdout, stderr []byte) error
}

// StreamExecutor is implemented by controllers that can stream a
// command's output (QEMU with mb-agent).
type StreamExecutor interface {
	// ExecStream runs req, feeding it from in until in is closed, and
	// returns its exit code. ErrExecStart (wrapped) when it could not
	// start; ErrStreamUnsupported when the guest agent cannot stream.
	ExecStream(ctx context.Context, req StreamRequest, in <-chan StreamInput, h StreamHandlers) (int, error)
}

// ErrStreamUnsupported is wrapped by a StreamExecutor whose guest agent
// cannot stream (stock qemu-ga); vmhost answers it with CodeNotAvailable.
var ErrStreamUnsupported = errors.New("the guest agent cannot stream output")

// execStream serves a MethodExecStream request on conn until the command
// ended and its last frame is written.
func (s *Server) execStream(ctx context.Context, conn net.Conn, r *bufio.Reader, req *Request) {
	var wmu sync.Mutex
	send := func(f StreamFrame) error {
		b, err := json.Marshal(f)
		if err != nil {
			return err
		}
		wmu.Lock()
		defer wmu.Unlock()
		_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		_, err = conn.Write(append(b, '\n'))
		return err
	}
	fail := func(code, format string, args ...any) {
		_ = send(StreamFrame{Error: fmt.Sprintf(format, args...), Code: code})
	}
	ex, ok := s.controller.(StreamExecutor)
	if !ok {
		fail(CodeNotAvailable, "exec_stream is not available: the %s backend cannot stream a command's output", s.controller.Backend())
		return
	}
	if len(req.Argv) == 0 || req.Argv[0] == "" {
		fail(CodeBadRequest, `exec_stream needs "argv": the command and its arguments, for example {"method":"exec_stream","argv":["uname","-a"]}`)
		return
	}
	if req.TTY && (req.Rows == 0 || req.Cols == 0) {
		fail(CodeBadRequest, `exec_stream with "tty" needs "rows" and "cols", the terminal's size`)
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	in := make(chan StreamInput, 4)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer close(in)
		if err := readStreamInput(ctx, r, in); err != nil {
			cancel(err)
		}
	}()
	code, err := ex.ExecStream(ctx, StreamRequest{Argv: req.Argv, Env: req.Env, TTY: req.TTY, Rows: req.Rows, Cols: req.Cols}, in, StreamHandlers{
		Started: func() { _ = send(StreamFrame{Started: true}) },
		Output: func(stdout, stderr []byte) error {
			return send(StreamFrame{Stdout: stdout, Stderr: stderr})
		},
	})
	switch {
	case errors.Is(err, ErrExecStart):
		code := 126
		if errors.Is(err, ErrExecNotFound) {
			code = 127
		}
		_ = send(StreamFrame{Exit: &code, ExecError: err.Error()})
	case errors.Is(err, ErrStreamUnsupported):
		fail(CodeNotAvailable, "exec_stream: %v", err)
	case err != nil && context.Cause(ctx) != nil:
		fail(CodeFailed, "exec_stream: %v", context.Cause(ctx))
	case err != nil:
		fail(CodeFailed, "exec_stream: %v", err)
	default:
		_ = send(StreamFrame{Exit: &code})
	}
	// Unblock the reader: the client may keep its side open.
	_ = conn.SetReadDeadline(time.Now())
	cancel(nil)
	<-readDone
}

// errClientGone: the client of a streamed exec hung up.
var errClientGone = errors.New("the client hung up")

// readStreamInput reads the client's frames into in until the client
// hangs up (an error) or ctx ends (nil).
func readStreamInput(ctx context.Context, r *bufio.Reader, in chan<- StreamInput) error {
	for {
		line, err := readLine(r, MaxRequestSize)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errLineTooLong) {
			return fmt.Errorf("a stream frame over %d bytes: send stdin in pieces of at most %d bytes", MaxRequestSize, MaxStreamStdin)
		}
		if err != nil {
			return fmt.Errorf("%w: %v", errClientGone, err)
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		var f StreamFrame
		if err := dec.Decode(&f); err != nil {
			return fmt.Errorf(`bad stream frame: %v (send {"stdin":"<base64>"}, {"eof":true} or {"rows":R,"cols":C})`, err)
		}
		ev := StreamInput{Data: f.Stdin, EOF: f.EOF, Rows: f.Rows, Cols: f.Cols}
		select {
		case in <- ev:
		case <-ctx.Done():
			return nil
		}
	}
}

// ExecStream opens a streamed exec on vmhost: it sends the request (its
// Method set to MethodExecStream) and returns the connection, on which
// StreamFrame lines then go both ways. The caller closes it; closing it
// before the last frame kills the command.
func (c *Client) ExecStream(ctx context.Context, req Request) (net.Conn, error) {
	req.Method = MethodExecStream
	d := net.Dialer{Timeout: DialTimeout}
	conn, err := d.DialContext(ctx, "unix", c.socketPath)
	if err != nil {
		return nil, fmt.Errorf("connect to vmhost at %s: %w (is the VM running?)", c.socketPath, err)
	}
	b, err := json.Marshal(req)
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := conn.Write(append(b, '\n')); err != nil {
		conn.Close()
		return nil, fmt.Errorf("send exec_stream to vmhost at %s: %w", c.socketPath, err)
	}
	_ = conn.SetWriteDeadline(time.Time{})
	return conn, nil
}

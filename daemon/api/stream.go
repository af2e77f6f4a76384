package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
)

// StreamUpgrade is the protocol named in the Upgrade header of
// POST /v1/vms/{name}/exec/stream.
const StreamUpgrade = "mb-exec-stream"

// ExecStreamRequest is the body of POST /v1/vms/{name}/exec/stream. The
// request carries "Connection: Upgrade" and "Upgrade: mb-exec-stream";
// the daemon answers 101 Switching Protocols, and the connection then
// carries StreamFrame lines (NDJSON) both ways until the daemon closes it
// after the last frame. A client that hangs up kills the command.
type ExecStreamRequest struct {
	Argv []string `json:"argv"`
	Env  []string `json:"env,omitempty"`
	// TTY runs the command on a pseudo-terminal of Rows x Cols (stdout
	// and stderr are then the terminal's output, sent as stdout).
	TTY  bool   `json:"tty,omitempty"`
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`
}

// StreamFrame is one line of an exec stream. The client sends stdin
// ({"stdin":"<base64>"}, at most MaxStreamStdin bytes a frame), its end
// ({"eof":true}) and terminal sizes ({"rows":R,"cols":C}); the daemon
// sends {"started":true}, output ({"stdout":...}, {"stderr":...}) and last
// {"exit":N} (with exec_error when the guest could not start the program)
// or {"error":"...","code":"..."}.
type StreamFrame struct {
	Stdin     []byte `json:"stdin,omitempty"`
	EOF       bool   `json:"eof,omitempty"`
	Rows      uint16 `json:"rows,omitempty"`
	Cols      uint16 `json:"cols,omitempty"`
	Started   bool   `json:"started,omitempty"`
	Stdout    []byte `json:"stdout,omitempty"`
	Stderr    []byte `json:"stderr,omitempty"`
	Exit      *int   `json:"exit,omitempty"`
	ExecError string `json:"exec_error,omitempty"`
	Error     string `json:"error,omitempty"`
	Code      string `json:"code,omitempty"`
}

// MaxStreamStdin is the most stdin one client frame may carry.
const MaxStreamStdin = 256 << 10

// maxStreamFrame bounds a frame line read from the daemon.
const maxStreamFrame = 4 << 20

// ExecStream is an open exec stream. Send and Recv may be used from two
// goroutines; Close hangs up (killing the command if it still runs).
type ExecStream struct {
	rwc io.ReadWriteCloser
	r   *bufio.Reader
	wmu sync.Mutex
}

// Send writes one frame.
func (s *ExecStream) Send(f StreamFrame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err = s.rwc.Write(append(b, '\n'))
	return err
}

// Recv reads the next frame; io.EOF once the daemon closed the stream.
func (s *ExecStream) Recv() (StreamFrame, error) {
	var f StreamFrame
	for {
		line, err := s.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return f, fmt.Errorf("exec stream: a frame over %d bytes", maxStreamFrame)
		}
		if err != nil && len(bytes.TrimSpace(line)) == 0 {
			if errors.Is(err, io.EOF) {
				return f, io.EOF
			}
			return f, fmt.Errorf("exec stream: %w", err)
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if err := json.Unmarshal(line, &f); err != nil {
			return f, fmt.Errorf("exec stream: bad frame from the daemon: %w", err)
		}
		return f, nil
	}
}

// Close hangs up.
func (s *ExecStream) Close() error { return s.rwc.Close() }

// ExecStream starts a command with its output streamed (see
// ExecStreamRequest).
func (c *Client) ExecStream(ctx context.Context, name string, req ExecStreamRequest) (*ExecStream, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://mb"+vmPath(name, "/exec/stream"), bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Connection", "Upgrade")
	hreq.Header.Set("Upgrade", StreamUpgrade)
	resp, err := c.http.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("call the mb daemon at %s: %w", c.socket, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e Error
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("mb daemon answered %s: %s", resp.Status, bytes.TrimSpace(data))
		}
		return nil, &StatusError{Status: resp.StatusCode, Message: e.Error, Code: e.Code}
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		return nil, errors.New("the mb daemon's exec stream is not writable (101 without a connection)")
	}
	return &ExecStream{rwc: rwc, r: bufio.NewReaderSize(rwc, maxStreamFrame)}, nil
}

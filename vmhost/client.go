package vmhost

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
)

// Client timeouts.
const (
	// DialTimeout bounds connecting to the socket.
	DialTimeout = 2 * time.Second
	// CallTimeout bounds a request that does not block on the VM (status,
	// info); stop and exec get their own timeout plus StopMargin.
	CallTimeout = 10 * time.Second
	// StopMargin is added to a stop's timeout for the client's deadline, so
	// the server's own answer (even a failure) arrives first.
	StopMargin = 15 * time.Second
)

// Client speaks the control protocol to one vmhost socket. Each call uses
// its own connection, so a Client is safe for concurrent use.
type Client struct {
	socketPath string
}

// NewClient returns a client for the vmhost socket at socketPath.
func NewClient(socketPath string) *Client {
	return &Client{socketPath: socketPath}
}

// SocketPath returns the socket the client talks to.
func (c *Client) SocketPath() string { return c.socketPath }

// RemoteError is an error answered by vmhost ({"ok":false,"error":...}).
type RemoteError struct {
	Socket  string
	Method  Method
	Message string
	// Code is the reply's Code (one of the Code* constants, or empty).
	Code string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("vmhost %s: %s: %s", e.Socket, e.Method, e.Message)
}

// Status asks for the VM's state.
func (c *Client) Status() (*Response, error) {
	return c.Call(context.Background(), Request{Method: MethodStatus})
}

// Info asks for everything vmhost knows about the VM.
func (c *Client) Info() (*Response, error) {
	return c.Call(context.Background(), Request{Method: MethodInfo})
}

// Stop stops the VM gracefully and returns once it is down. A zero
// timeoutSeconds uses the server's default (30 s).
func (c *Client) Stop(timeoutSeconds int) (*Response, error) {
	return c.Call(context.Background(), Request{Method: MethodStop, TimeoutSeconds: timeoutSeconds})
}

// ForceStop kills the VM and returns once it is gone.
func (c *Client) ForceStop() (*Response, error) {
	return c.Call(context.Background(), Request{Method: MethodForceStop})
}

// IsAlive reports whether a vmhost answers status on the socket.
func (c *Client) IsAlive() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := c.Call(ctx, Request{Method: MethodStatus})
	return err == nil && r.OK
}

// deadline picks the client-side deadline for a request.
func deadline(req Request) time.Duration {
	switch req.Method {
	case MethodStop:
		t := DefaultStopTimeout
		if req.TimeoutSeconds > 0 {
			t = time.Duration(req.TimeoutSeconds) * time.Second
		}
		return t + StopMargin
	case MethodForceStop:
		return 30*time.Second + StopMargin
	}
	if req.TimeoutSeconds > 0 {
		return time.Duration(req.TimeoutSeconds)*time.Second + 5*time.Second
	}
	return CallTimeout
}

// Call sends one request and reads its reply, with a dial timeout and a
// deadline fitting the method (and ctx's deadline, if earlier). A reply with
// ok:false is returned together with a *RemoteError.
func (c *Client) Call(ctx context.Context, req Request) (*Response, error) {
	if req.Method == MethodExec {
		return c.exec(ctx, req)
	}
	d := net.Dialer{Timeout: DialTimeout}
	conn, err := d.DialContext(ctx, "unix", c.socketPath)
	if err != nil {
		return nil, fmt.Errorf("connect to vmhost at %s: %w (is the VM running?)", c.socketPath, err)
	}
	defer conn.Close()
	dl := time.Now().Add(deadline(req))
	if cd, ok := ctx.Deadline(); ok && cd.Before(dl) {
		dl = cd
	}
	_ = conn.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()

	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode %s request: %w", req.Method, err)
	}
	b = append(b, '\n')
	if _, err := conn.Write(b); err != nil {
		return nil, fmt.Errorf("send %s to vmhost at %s: %w", req.Method, c.socketPath, err)
	}
	line, err := readLine(bufio.NewReaderSize(conn, 4<<10), MaxReplySize)
	if err != nil {
		if errors.Is(err, errLineTooLong) {
			return nil, fmt.Errorf("read %s reply from vmhost at %s: reply over %d bytes", req.Method, c.socketPath, MaxReplySize)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("read %s reply from vmhost at %s: %w", req.Method, c.socketPath, ctx.Err())
		}
		return nil, fmt.Errorf("read %s reply from vmhost at %s: %w", req.Method, c.socketPath, err)
	}
	return c.parseReply(req.Method, line)
}

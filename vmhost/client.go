package vmhost

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"syscall"
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
	// the server's own answer (even a failure) arrives first: a server
	// answers a stop by its timeout less a second (see StopBudget).
	StopMargin = 5 * time.Second
	// stopPollEvery spaces the status polls of a Stop against a server
	// that answers at once with "stopping".
	stopPollEvery = 100 * time.Millisecond
)

// ErrNoAnswer is wrapped by a call's error when vmhost accepted the
// connection but did not answer within the call's deadline: it is hung or
// stopped (SIGSTOP), not gone.
var ErrNoAnswer = errors.New("vmhost did not answer in time")

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

// Stop stops the VM gracefully and returns once it is down, or with an
// error once the timeout (plus StopMargin) has run out. A zero
// timeoutSeconds uses the server's default (30 s). A server that answers at
// once with state "stopping" (as other vmhost implementations do) is polled
// with status until the VM is down.
func (c *Client) Stop(timeoutSeconds int) (*Response, error) {
	req := Request{Method: MethodStop, TimeoutSeconds: timeoutSeconds}
	ctx, cancel := context.WithTimeout(context.Background(), deadline(req))
	defer cancel()
	r, err := c.Call(ctx, req)
	if err != nil {
		return r, err
	}
	return c.waitDown(ctx, req.Method, r)
}

// ForceStop kills the VM and returns once it is gone (polling status, like
// Stop, when the server answers before the VM is down).
func (c *Client) ForceStop() (*Response, error) {
	req := Request{Method: MethodForceStop}
	ctx, cancel := context.WithTimeout(context.Background(), deadline(req))
	defer cancel()
	r, err := c.Call(ctx, req)
	if err != nil {
		return r, err
	}
	return c.waitDown(ctx, req.Method, r)
}

// isDown reports whether a state means the VM no longer runs.
func isDown(state string) bool { return state == StateStopped || state == StateError }

// waitDown polls status after a stop or force_stop whose reply says the VM
// is still going down, until the VM is down or ctx ends. A socket that is
// gone means vmhost exited with its VM: that is down too.
func (c *Client) waitDown(ctx context.Context, m Method, r *Response) (*Response, error) {
	if isDown(r.State) {
		return r, nil
	}
	last := r.State
	tick := time.NewTicker(stopPollEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("vmhost %s: %s: the VM is still %s when the deadline ran out: %w", c.socketPath, m, last, ctx.Err())
		case <-tick.C:
		}
		st, err := c.Call(ctx, Request{Method: MethodStatus})
		switch {
		case err == nil && isDown(st.State):
			st.StoppedBy = r.StoppedBy
			return st, nil
		case err == nil:
			last = st.State
		case errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT):
			down := *r
			down.State = StateStopped
			return &down, nil
		}
	}
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
		return ForceStopTimeout + StopMargin
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
	t0 := time.Now()
	dl := t0.Add(deadline(req))
	if cd, ok := ctx.Deadline(); ok && cd.Before(dl) {
		dl = cd
	}
	budget := dl.Sub(t0)
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
		var ne net.Error
		timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded) || (ctx.Err() == nil && errors.As(err, &ne) && ne.Timeout())
		if timedOut {
			cause := err
			if ctx.Err() != nil {
				cause = ctx.Err()
			}
			return nil, fmt.Errorf("%w: %s sent to %s got no reply within %s: vmhost is hung or stopped (SIGSTOP?); see vmhost.log beside the socket (%w)",
				ErrNoAnswer, req.Method, c.socketPath, budget.Round(time.Millisecond), cause)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("read %s reply from vmhost at %s: %w", req.Method, c.socketPath, ctx.Err())
		}
		return nil, fmt.Errorf("read %s reply from vmhost at %s: %w", req.Method, c.socketPath, err)
	}
	return c.parseReply(req.Method, line)
}

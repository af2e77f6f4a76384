package guestinit

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"time"
)

// qgaConn is a minimal hand-written QEMU guest agent client for the VM
// tests, independent of the host-side client in agent/qga.
type qgaConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialQGA(ctx context.Context, path string) (*qgaConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("connect to the agent socket %s: %w", path, err)
	}
	return &qgaConn{c: c, r: bufio.NewReader(c)}, nil
}

func (q *qgaConn) close() { q.c.Close() }

// sync resynchronises with guest-sync-delimited, retrying every few
// seconds until ctx ends (the agent may still be starting).
func (q *qgaConn) sync(ctx context.Context) error {
	var last error
	for ctx.Err() == nil {
		id := rand.Int64N(1 << 40)
		attempt := time.Now().Add(5 * time.Second)
		if dl, ok := ctx.Deadline(); ok && dl.Before(attempt) {
			attempt = dl
		}
		_ = q.c.SetDeadline(attempt)
		if _, err := fmt.Fprintf(q.c, `{"execute":"guest-sync-delimited","arguments":{"id":%d}}`+"\n", id); err != nil {
			return fmt.Errorf("write guest-sync-delimited: %w", err)
		}
		for {
			if _, err := q.r.ReadBytes(0xff); err != nil {
				last = err
				break
			}
			line, err := q.r.ReadBytes('\n')
			if err != nil {
				last = err
				break
			}
			var resp struct {
				Return int64 `json:"return"`
			}
			if json.Unmarshal(line, &resp) == nil && resp.Return == id {
				return nil
			}
		}
	}
	return fmt.Errorf("guest-sync-delimited got no answer: %v", last)
}

// call runs one command and decodes its "return" into out (when not nil).
func (q *qgaConn) call(ctx context.Context, cmd string, args, out any) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = q.c.SetDeadline(dl)
	}
	req, err := qgaRequest(cmd, args)
	if err != nil {
		return err
	}
	if _, err := q.c.Write(append(req, '\n')); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	line, err := q.r.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("%s: read reply: %w", cmd, err)
	}
	var resp struct {
		Return json.RawMessage `json:"return"`
		Error  *struct {
			Class string `json:"class"`
			Desc  string `json:"desc"`
		} `json:"error"`
	}
	if err := json.Unmarshal(line, &resp); err != nil {
		return fmt.Errorf("%s: bad reply %q: %w", cmd, line, err)
	}
	if resp.Error != nil {
		return fmt.Errorf("%s: %s: %s", cmd, resp.Error.Class, resp.Error.Desc)
	}
	if out != nil {
		return json.Unmarshal(resp.Return, out)
	}
	return nil
}

// qgaRequest encodes a request; stock qemu-ga refuses "arguments": null,
// so nil arguments are left out.
func qgaRequest(cmd string, args any) ([]byte, error) {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	return json.Marshal(req)
}

// send writes a command without waiting for a reply.
func (q *qgaConn) send(cmd string, args any) error {
	req, err := qgaRequest(cmd, args)
	if err != nil {
		return err
	}
	_, err = q.c.Write(append(req, '\n'))
	return err
}

// execStatus is guest-exec-status's reply.
type execStatus struct {
	Exited   bool   `json:"exited"`
	ExitCode *int   `json:"exitcode"`
	Signal   *int   `json:"signal"`
	OutData  []byte `json:"out-data"`
}

// run runs argv in the guest through guest-exec and waits for it.
func (q *qgaConn) run(ctx context.Context, argv ...string) (execStatus, error) {
	var started struct {
		PID int `json:"pid"`
	}
	if err := q.call(ctx, "guest-exec", map[string]any{"path": argv[0], "arg": argv[1:], "capture-output": true}, &started); err != nil {
		return execStatus{}, err
	}
	for {
		var st execStatus
		if err := q.call(ctx, "guest-exec-status", map[string]any{"pid": started.PID}, &st); err != nil {
			return st, err
		}
		if st.Exited {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("guest command %q still running: %w", argv, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

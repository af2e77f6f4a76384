package guestinit

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// qmpConn is a minimal hand-written QMP client for the VM tests: greeting,
// qmp_capabilities, then one command at a time, with events kept.
type qmpConn struct {
	c      net.Conn
	r      *bufio.Reader
	events []string
}

type qmpMessage struct {
	QMP    json.RawMessage `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string `json:"event"`
}

// dialQMP connects to QEMU's QMP socket (retrying until QEMU has made it)
// and leaves it in command mode.
func dialQMP(ctx context.Context, path string) (*qmpConn, error) {
	var c net.Conn
	for {
		var err error
		var d net.Dialer
		c, err = d.DialContext(ctx, "unix", path)
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to QMP %s: %w", path, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	q := &qmpConn{c: c, r: bufio.NewReader(c)}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	m, err := q.read()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("read QMP greeting: %w", err)
	}
	if m.QMP == nil {
		c.Close()
		return nil, fmt.Errorf("QMP greeting missing: got %+v", m)
	}
	if err := q.execute(ctx, "qmp_capabilities"); err != nil {
		c.Close()
		return nil, err
	}
	return q, nil
}

func (q *qmpConn) read() (qmpMessage, error) {
	line, err := q.r.ReadBytes('\n')
	if err != nil {
		return qmpMessage{}, err
	}
	var m qmpMessage
	if err := json.Unmarshal(line, &m); err != nil {
		return qmpMessage{}, fmt.Errorf("bad QMP line %q: %w", line, err)
	}
	if m.Event != "" {
		q.events = append(q.events, m.Event)
	}
	return m, nil
}

// execute runs one argument-less command and waits for its reply.
func (q *qmpConn) execute(ctx context.Context, cmd string) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = q.c.SetDeadline(dl)
	}
	if _, err := fmt.Fprintf(q.c, "{\"execute\":%q}\n", cmd); err != nil {
		return fmt.Errorf("QMP %s: %w", cmd, err)
	}
	for {
		m, err := q.read()
		if err != nil {
			return fmt.Errorf("QMP %s: %w", cmd, err)
		}
		if m.Error != nil {
			return fmt.Errorf("QMP %s: %s: %s", cmd, m.Error.Class, m.Error.Desc)
		}
		if m.Return != nil {
			return nil
		}
	}
}

// waitEvent waits for the named event (or finds it among those already
// read).
func (q *qmpConn) waitEvent(ctx context.Context, name string) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = q.c.SetDeadline(dl)
	}
	for {
		for _, e := range q.events {
			if e == name {
				return nil
			}
		}
		if _, err := q.read(); err != nil {
			return fmt.Errorf("wait for QMP event %s (saw %v): %w", name, q.events, err)
		}
	}
}

func (q *qmpConn) close() { q.c.Close() }

package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
)

// qmpCallTimeout bounds every QMP command. The library has no deadlines, so
// a call that does not answer in time marks the monitor broken.
const qmpCallTimeout = 10 * time.Second

// errQMPDial marks a failure to reach the QMP socket at all (not yet
// listening), which is worth retrying while QEMU starts; a failed handshake
// is not.
var errQMPDial = errors.New("QMP socket not reachable")

// errMonitorBroken is returned for calls on a monitor that timed out or lost
// its connection.
var errMonitorBroken = errors.New("QMP monitor is not answering")

// monitor wraps a go-qemu SocketMonitor with deadlines and a continuous
// event drain. Only small commands go through it: the library breaks on a
// reply over 64 KiB.
type monitor struct {
	mon *qmp.SocketMonitor
	// timeout bounds each call (qmpCallTimeout outside tests).
	timeout time.Duration
	broken  atomic.Bool
	// drained is closed when the event stream has ended (the connection
	// closed), so every event QEMU sent has been handled.
	drained chan struct{}
}

// dialMonitor connects to QMP at path, runs the capabilities handshake and
// starts draining events into onEvent, which must not block.
func dialMonitor(ctx context.Context, path string, timeout time.Duration, onEvent func(qmp.Event)) (*monitor, error) {
	mon, err := qmp.NewSocketMonitor("unix", path, timeout)
	if err != nil {
		return nil, fmt.Errorf("connect to QMP at %s: %w: %w", path, errQMPDial, err)
	}
	// Connect reads the banner and runs qmp_capabilities with no deadline.
	// On a timeout the goroutine is abandoned; it ends when QEMU (killed by
	// the caller) closes the socket.
	connected := make(chan error, 1)
	go func() { connected <- mon.Connect() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err := <-connected:
		if err != nil {
			return nil, fmt.Errorf("QMP handshake on %s: %w", path, err)
		}
	case <-timer.C:
		return nil, fmt.Errorf("QMP handshake on %s: no answer within %s", path, timeout)
	case <-ctx.Done():
		return nil, fmt.Errorf("QMP handshake on %s: %w", path, ctx.Err())
	}
	events, err := mon.Events(ctx)
	if err != nil {
		_ = mon.Disconnect()
		return nil, fmt.Errorf("QMP events on %s: %w", path, err)
	}
	m := &monitor{mon: mon, timeout: timeout, drained: make(chan struct{})}
	go func() {
		defer close(m.drained)
		for e := range events {
			onEvent(e)
		}
		m.broken.Store(true)
	}()
	return m, nil
}

// run executes one QMP command with a deadline and returns its "return"
// value. A command that times out marks the monitor broken.
func (m *monitor) run(ctx context.Context, command string) (json.RawMessage, error) {
	return m.runArgs(ctx, command, nil)
}

// runArgs is run with arguments (nil: none).
func (m *monitor) runArgs(ctx context.Context, command string, args any) (json.RawMessage, error) {
	if m.broken.Load() {
		return nil, fmt.Errorf("%s: %w", command, errMonitorBroken)
	}
	req, err := json.Marshal(qmp.Command{Execute: command, Args: args})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", command, err)
	}
	type result struct {
		out []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		out, err := m.mon.Run(req)
		ch <- result{out, err}
	}()
	timer := time.NewTimer(m.timeout)
	defer timer.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("QMP %s: %w", command, r.err)
		}
		var reply struct {
			Return json.RawMessage `json:"return"`
		}
		if err := json.Unmarshal(r.out, &reply); err != nil {
			return nil, fmt.Errorf("QMP %s: bad reply: %w", command, err)
		}
		return reply.Return, nil
	case <-timer.C:
		m.broken.Store(true)
		return nil, fmt.Errorf("QMP %s: no answer within %s: %w", command, m.timeout, errMonitorBroken)
	case <-ctx.Done():
		// The reply may still come; the next call waits for the library's
		// lock, bounded by its own deadline.
		return nil, fmt.Errorf("QMP %s: %w", command, ctx.Err())
	}
}

// queryStatus returns the VM run state ("running", "paused",
// "guest-panicked", ...).
func (m *monitor) queryStatus(ctx context.Context) (string, error) {
	out, err := m.run(ctx, "query-status")
	if err != nil {
		return "", err
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return "", fmt.Errorf("QMP query-status: bad reply: %w", err)
	}
	return st.Status, nil
}

// close drops the connection without blocking the caller.
func (m *monitor) close() {
	m.broken.Store(true)
	go func() { _ = m.mon.Disconnect() }()
}

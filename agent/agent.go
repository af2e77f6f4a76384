// Package agent is the guest side of mb's guest agent protocol: a server
// that speaks the QEMU guest agent protocol (QGA) over a virtio-serial port
// or a vsock listener, run inside the guest by mb-agent. It answers the
// standard QGA commands mb uses (guest-sync-delimited, guest-ping,
// guest-info, guest-exec, guest-shutdown, ...) and mb's extensions, whose
// names start with "mb-" (mb-get-metrics).
//
// The host side of the protocol lives in package agent/qga; the wire types
// both sides share in agent/qgaproto.
package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/mbvm/mb/agent/guestmsg"
)

// Options configures Serve.
type Options struct {
	// VsockPort, when not zero, makes the agent listen on this vsock port
	// (accepting the host, CID 2, only) instead of the virtio-serial port.
	VsockPort int
	// Device overrides the path of the virtio-serial port. When empty, the
	// port named org.qemu.guest_agent.0 is found under /dev/virtio-ports/ or
	// through /sys/class/virtio-ports/*/name.
	Device string
	// Logger receives the agent's logs; nil means slog.Default().
	Logger *slog.Logger
	// PID1 is true when PID 1 is mb-agent's own init (guestinit). A
	// guest-shutdown then signals PID 1: SIGTERM to power off, SIGINT to
	// reboot, SIGUSR1 to halt. Otherwise the agent asks the init system.
	PID1 bool
	// Shutdown, when set, is called for guest-shutdown instead of signalling
	// PID 1 or asking the init system (tests, an agent run on the host for
	// the fake backend). Mode is powerdown, reboot or halt.
	Shutdown func(ctx context.Context, mode string) error
	// Messages, when set, is the queue of messages from guest programs
	// (the command socket's mb.* handlers) that the host drains with the
	// mb-get-messages extension; without it the agent does not offer that
	// command.
	Messages *guestmsg.Queue
}

// retryDelay is how long Serve waits before looking for a missing device
// again, or reopening a port that failed.
const retryDelay = time.Second

// Serve runs the agent until ctx is cancelled, then returns ctx.Err(). A
// missing device is waited for, not an error. It returns another error only
// when the transport cannot be used at all (vsock unsupported, port taken).
func Serve(ctx context.Context, opts Options) error {
	s := newServer(opts)
	if opts.VsockPort != 0 {
		return s.serveVsock(ctx, opts.VsockPort)
	}
	waiting := false
	for {
		path := opts.Device
		var err error
		if path == "" {
			path, err = findPort("/dev", "/sys")
		}
		if err == nil {
			err = s.servePort(ctx, path)
			waiting = false
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errNoPort) {
			if !waiting {
				s.log.Info("waiting for the guest agent port", "port", portName, "device", opts.Device, "why", err)
				waiting = true
			}
		} else {
			s.log.Warn("guest agent port failed; reopening", "device", path, "error", err)
		}
		if !sleepCtx(ctx, retryDelay) {
			return ctx.Err()
		}
	}
}

// ServeConn answers QGA requests read from conn until reading fails or ctx
// is done, without looking for a device: for tests and for an agent served
// over a socket on the host. It returns nil when conn reaches EOF. Each call
// is a fresh agent; NewServer gives one agent for many connections.
func ServeConn(ctx context.Context, conn io.ReadWriter, opts Options) error {
	return NewServer(opts).ServeConn(ctx, conn)
}

// Server is one agent served over connections in turn (on the host, for
// tests and the fake backend). Like the agent in a guest, it keeps its
// commands and open files across connections, so a host that reconnects
// still finds them.
type Server struct {
	s *server
}

// NewServer returns an agent to serve with ServeConn.
func NewServer(opts Options) *Server {
	return &Server{s: newServer(opts)}
}

// ServeConn answers QGA requests read from conn until reading fails or ctx
// is done. It returns nil when conn reaches EOF.
func (s *Server) ServeConn(ctx context.Context, conn io.ReadWriter) error {
	err := s.s.serveStream(ctx, conn, conn)
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// sleepCtx waits for d or until ctx is done; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

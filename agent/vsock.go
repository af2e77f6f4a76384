//go:build linux

package agent

import (
	"context"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// serveVsock listens on a vsock port and serves each connection from the
// host (CID 2); connections from anywhere else are closed at once.
func (s *server) serveVsock(ctx context.Context, port int) error {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("create vsock socket (is the vsock transport driver loaded?): %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: uint32(port)}); err != nil {
		return fmt.Errorf("bind vsock port %d (is another agent running?): %w", port, err)
	}
	if err := unix.Listen(fd, 4); err != nil {
		return fmt.Errorf("listen on vsock port %d: %w", port, err)
	}
	s.log.Info("serving the guest agent protocol", "vsock_port", port)
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(pfd, 500); err != nil && err != unix.EINTR {
			return fmt.Errorf("poll vsock listener: %w", err)
		}
		nfd, sa, err := unix.Accept4(fd, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
		if err == unix.EAGAIN || err == unix.EINTR || err == unix.ECONNABORTED {
			continue
		}
		if err != nil {
			return fmt.Errorf("accept on vsock port %d: %w", port, err)
		}
		vm, ok := sa.(*unix.SockaddrVM)
		if !ok || vm.CID != unix.VMADDR_CID_HOST {
			s.log.Warn("refused a vsock connection not from the host", "peer", sa)
			unix.Close(nfd)
			continue
		}
		conn := os.NewFile(uintptr(nfd), "vsock")
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			stop := context.AfterFunc(ctx, func() { conn.Close() })
			defer stop()
			if err := s.serveStream(ctx, conn, conn); err != nil && ctx.Err() == nil {
				s.log.Debug("vsock connection ended", "error", err)
			}
		}()
	}
	return ctx.Err()
}

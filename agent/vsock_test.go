//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mbvm/mb/internal/testenv"
)

// TestVsockListener binds a vsock port, refuses a second agent on the same
// port, and stops when cancelled. (Connecting needs a VM or the vsock
// loopback transport; the mini image's VM tests cover the virtio-serial
// path.)
func TestVsockListener(t *testing.T) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0)
	if err != nil {
		testenv.Need(t, fmt.Sprintf("vsock sockets (modprobe vsock_loopback): %v", err))
	}
	unix.Close(fd)
	const port = 52841
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, Options{VsockPort: port, Logger: testLogger(t)}) }()

	// Wait until the agent holds the port: a bind of our own then fails.
	deadline := time.Now().Add(callTimeout)
	for {
		fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		err = unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: port})
		unix.Close(fd)
		if errors.Is(err, unix.EADDRINUSE) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not bind vsock port %d: %v", port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A second agent on the same port fails with an error naming it.
	sctx, scancel := context.WithTimeout(context.Background(), callTimeout)
	second := Serve(sctx, Options{VsockPort: port, Logger: testLogger(t)})
	scancel()
	if second == nil || !strings.Contains(second.Error(), "52841") {
		t.Errorf("second agent on the port: %v, want a bind error naming the port", second)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Serve = %v, want context.Canceled", err)
		}
	case <-time.After(callTimeout):
		t.Fatal("Serve on vsock did not return after cancel")
	}
}

//go:build linux

package vsockrelay

import (
	"errors"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const testVsockPort = 52025

// TestListenerCloseUnblocksAccept checks the vsock listener's own logic:
// Close makes a blocked Accept return net.ErrClosed.
func TestListenerCloseUnblocksAccept(t *testing.T) {
	l, err := ListenVsock(testVsockPort+1, unix.VMADDR_CID_HOST)
	if err != nil {
		t.Logf("no vsock here: %v", err)
		return
	}
	got := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		got <- err
	}()
	time.Sleep(50 * time.Millisecond) // let Accept block; the test holds either way
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
	l2, err := ListenVsock(testVsockPort+1, unix.VMADDR_CID_HOST)
	if err != nil {
		t.Fatalf("the port is not free again after Close: %v", err)
	}
	l2.Close()
}

package api

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A daemon that died between two calls leaves its socket refusing (or
// removed): the call says the daemon went away and what to do, not a raw
// "connection refused".
func TestDaemonGoneBetweenCalls(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "mba")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, SocketName)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // the socket file stays, as after kill -9: connections are refused
	c := NewClient(sock)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, step := range []string{"refused", "removed"} {
		_, err := c.Create(ctx, []byte("name: x\n"))
		if err == nil || !strings.Contains(err.Error(), "went away") || !strings.Contains(err.Error(), "mb ls") {
			t.Errorf("socket %s: %v; want the daemon went away, check with mb ls", step, err)
		}
		os.Remove(sock)
	}
}

package peercred

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestCheck(t *testing.T) {
	if err := Check(1000, 1000); err != nil {
		t.Errorf("same uid refused: %v", err)
	}
	for _, c := range [][2]int{{0, 1000}, {1001, 1000}, {1000, 0}} {
		if err := Check(c[0], c[1]); err == nil {
			t.Errorf("peer uid %d accepted by a socket of uid %d", c[0], c[1])
		}
	}
}

func TestUIDOfARealPeer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("unix", path)
		if err == nil {
			defer c.Close()
			c.Read(make([]byte, 1))
		}
	}()
	c, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	uid, err := UID(c)
	if err != nil || uid != os.Getuid() {
		t.Fatalf("UID = %d, %v; want %d", uid, err, os.Getuid())
	}
	if err := Verify(c); err != nil {
		t.Errorf("Verify of our own process: %v", err)
	}
}

//go:build linux

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mbvm/mb/agent/internal/frame"
	"github.com/mbvm/mb/agent/qgaproto"
	"github.com/mbvm/mb/internal/testenv"
)

func TestFindPort(t *testing.T) {
	dir := t.TempDir()
	dev, sys := filepath.Join(dir, "dev"), filepath.Join(dir, "sys")
	if _, err := findPort(dev, sys); !errors.Is(err, errNoPort) {
		t.Fatalf("no port: err = %v, want errNoPort", err)
	}
	// No udev: only sysfs names the port.
	for name, port := range map[string]string{"vport1p1": "com.redhat.spice.0", "vport2p1": portName} {
		d := filepath.Join(sys, "class", "virtio-ports", name)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "name"), []byte(port+"\n"), 0o644)
	}
	if _, err := findPort(dev, sys); !errors.Is(err, errNoPort) || !strings.Contains(err.Error(), "vport2p1") {
		t.Errorf("sysfs names a missing node: err = %v", err)
	}
	os.MkdirAll(dev, 0o755)
	os.WriteFile(filepath.Join(dev, "vport2p1"), nil, 0o600)
	if p, err := findPort(dev, sys); err != nil || p != filepath.Join(dev, "vport2p1") {
		t.Errorf("findPort = %q, %v; want %s/vport2p1", p, err, dev)
	}
	// udev's symlink wins.
	os.MkdirAll(filepath.Join(dev, "virtio-ports"), 0o755)
	os.WriteFile(filepath.Join(dev, "virtio-ports", portName), nil, 0o600)
	if p, err := findPort(dev, sys); err != nil || p != filepath.Join(dev, "virtio-ports", portName) {
		t.Errorf("findPort = %q, %v; want the udev path", p, err)
	}
}

// TestPortReaderBacksOffWhenNoHost reads a FIFO whose writer is gone: like
// a virtio-serial port with no host, read returns 0 at once. The reader
// must wait before reporting it, not spin.
func TestPortReaderBacksOffWhenNoHost(t *testing.T) {
	p := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(p, 0o600); err != nil {
		testenv.Need(t, fmt.Sprintf("mkfifo: %v", err))
	}
	w, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	r, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w.Close() // no writer left: reads return 0 at once
	pr := &portReader{ctx: context.Background(), f: r}
	for range 3 {
		t0 := time.Now()
		n, err := pr.Read(make([]byte, 10))
		if n != 0 || !errors.Is(err, errRetry) {
			t.Fatalf("Read = %d, %v; want 0, errRetry", n, err)
		}
		// A lower bound only: a slow machine can only make it longer.
		if d := time.Since(t0); d < idleBackoff {
			t.Errorf("Read returned after %v, want a backoff of at least %v", d, idleBackoff)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	pr.ctx = ctx
	if _, err := pr.Read(make([]byte, 10)); !errors.Is(err, context.Canceled) {
		t.Errorf("Read with a cancelled context = %v", err)
	}
}

// openPTY returns a pseudo-terminal in raw mode: the master for the test,
// and the path of the slave for the agent to open as its port.
func openPTY(t *testing.T) (*os.File, string) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		testenv.Need(t, fmt.Sprintf("pseudo-terminals (/dev/ptmx): %v", err))
	}
	t.Cleanup(func() { m.Close() })
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	slave := "/dev/pts/" + itoa(n)
	// Raw mode on the slave side, kept while the master is open.
	s, err := os.OpenFile(slave, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tio, err := unix.IoctlGetTermios(int(s.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	tio.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	tio.Oflag &^= unix.OPOST
	tio.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	tio.Cflag &^= unix.CSIZE | unix.PARENB
	tio.Cflag |= unix.CS8
	tio.Cc[unix.VMIN], tio.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(int(s.Fd()), unix.TCSETS, tio); err != nil {
		t.Fatal(err)
	}
	return m, slave
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestServeWaitsForItsDeviceThenServesIt starts Serve on a device path that
// does not exist yet, then makes it appear (a symlink to a pty): the agent
// must retry, open it and answer on it.
func TestServeWaitsForItsDeviceThenServesIt(t *testing.T) {
	master, slave := openPTY(t)
	dev := filepath.Join(t.TempDir(), "vport1p1")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, Options{Device: dev, Logger: testLogger(t)}) }()
	time.Sleep(retryDelay / 2)
	if err := os.Symlink(slave, dev); err != nil {
		t.Fatal(err)
	}
	master.SetDeadline(time.Now().Add(callTimeout))
	fr := frame.NewReader(master, 1<<20)
	// The agent may not have opened the port yet: sync until it answers.
	var got json.RawMessage
	giveUp := time.Now().Add(callTimeout)
	for id := 1; got == nil; id++ {
		master.Write([]byte(`{"execute":"guest-sync-delimited","arguments":{"id":` + itoa(id) + `}}`))
		master.SetReadDeadline(time.Now().Add(2 * retryDelay))
		for {
			k, obj, err := fr.Next()
			if err != nil {
				if time.Now().After(giveUp) {
					t.Fatalf("no answer on the port within %v: %v", callTimeout, err)
				}
				break
			}
			if k == frame.Object {
				var r qgaproto.Reply
				json.Unmarshal(obj, &r)
				got = r.Return
				break
			}
		}
	}
	master.SetDeadline(time.Now().Add(callTimeout))
	master.Write([]byte(`{"execute":"guest-get-host-name"}`))
	for {
		k, obj, err := fr.Next()
		if err != nil {
			t.Fatalf("read reply: %v", err)
		}
		if k != frame.Object {
			continue
		}
		var r qgaproto.Reply
		if json.Unmarshal(obj, &r) != nil {
			t.Fatalf("reply %s", obj)
		}
		var hn qgaproto.HostName
		if json.Unmarshal(r.Return, &hn) == nil && hn.HostName != "" {
			break
		}
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Serve = %v, want context.Canceled", err)
		}
	case <-time.After(callTimeout):
		t.Fatal("Serve did not return after cancel")
	}
}

package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalocean/go-qemu/qmp"

	"github.com/mbvm/mb/internal/layout"
)

// fakeQMP is a QMP server on a unix socket that answers commands through
// reply (nil: never answer) and can push events.
type fakeQMP struct {
	t     *testing.T
	path  string
	reply func(cmd string) string
	conns chan net.Conn
}

func newFakeQMP(t *testing.T, reply func(cmd string) string) *fakeQMP {
	dir := vmDir(t)
	f := &fakeQMP{t: t, path: filepath.Join(dir, layout.QMPSocket), reply: reply, conns: make(chan net.Conn, 1)}
	l, err := net.Listen("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		t.Cleanup(func() { c.Close() })
		f.conns <- c
		c.Write([]byte(`{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}` + "\r\n"))
		// Like QEMU, read a stream of JSON values: commands are not
		// newline-terminated.
		dec := json.NewDecoder(c)
		for {
			var cmd qmp.Command
			if dec.Decode(&cmd) != nil {
				return
			}
			if cmd.Execute == "qmp_capabilities" {
				c.Write([]byte(`{"return": {}}` + "\r\n"))
				continue
			}
			if r := f.reply(cmd.Execute); r != "" {
				c.Write([]byte(r + "\r\n"))
			}
		}
	}()
	return f
}

func TestMonitorEventsAndStatus(t *testing.T) {
	f := newFakeQMP(t, func(cmd string) string {
		if cmd == "query-status" {
			return `{"return": {"status": "running", "running": true}}`
		}
		return `{"error": {"class": "CommandNotFound", "desc": "The command ` + cmd + ` has not been found"}}`
	})
	var mu sync.Mutex
	var got []string
	m, err := dialMonitor(context.Background(), f.path, 5*time.Second, func(e qmp.Event) {
		mu.Lock()
		got = append(got, e.Event)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	conn := <-f.conns
	// Many events before a command: the drain must keep the reply path free.
	for range 100 {
		conn.Write([]byte(`{"event": "RTC_CHANGE", "data": {"offset": 1}, "timestamp": {"seconds": 1, "microseconds": 2}}` + "\r\n"))
	}
	conn.Write([]byte(`{"event": "GUEST_PANICKED", "data": {"action": "pause"}, "timestamp": {"seconds": 1, "microseconds": 2}}` + "\r\n"))
	st, err := m.queryStatus(context.Background())
	if err != nil || st != "running" {
		t.Fatalf("queryStatus = %q, %v", st, err)
	}
	if _, err := m.run(context.Background(), "bogus"); err == nil || !strings.Contains(err.Error(), "has not been found") {
		t.Errorf("QMP error reply: err = %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n, last := len(got), ""
		if n > 0 {
			last = got[n-1]
		}
		mu.Unlock()
		if n == 101 && last == "GUEST_PANICKED" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d events (last %q), want 101 ending in GUEST_PANICKED", n, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMonitorDeadline: a monitor that never answers fails the call after
// its deadline and is then treated as broken.
func TestMonitorDeadline(t *testing.T) {
	f := newFakeQMP(t, func(string) string { return "" })
	m, err := dialMonitor(context.Background(), f.path, 300*time.Millisecond, func(qmp.Event) {})
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	_, err = m.queryStatus(context.Background())
	if !errors.Is(err, errMonitorBroken) {
		t.Fatalf("silent monitor: err = %v, want errMonitorBroken", err)
	}
	if _, err := m.run(context.Background(), "quit"); !errors.Is(err, errMonitorBroken) {
		t.Errorf("call on a broken monitor: err = %v", err)
	}
}

// TestMonitorHandshakeDeadline: a socket that never sends the banner fails
// the dial after the deadline instead of hanging.
func TestMonitorHandshakeDeadline(t *testing.T) {
	path := filepath.Join(vmDir(t), layout.QMPSocket)
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}()
	_, err = dialMonitor(context.Background(), path, 300*time.Millisecond, func(qmp.Event) {})
	if err == nil || !strings.Contains(err.Error(), "no answer") {
		t.Fatalf("dial of a mute socket: err = %v", err)
	}
}

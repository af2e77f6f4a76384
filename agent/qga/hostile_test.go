package qga_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mbvm/mb/agent"
	"github.com/mbvm/mb/agent/qga"
	"github.com/mbvm/mb/agent/qgaproto"
	"github.com/mbvm/mb/internal/testenv"
)

// hostileGuests are fake agents that misbehave on purpose.
var hostileGuests = map[string]func(ctx context.Context, c net.Conn){
	"garbage": func(ctx context.Context, c net.Conn) {
		chunk := []byte(`}{"ret]]urn"::: {{ "x" ` + "\x00\x01\n" + `{"return":` + "\x7f{[")
		for ctx.Err() == nil {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	},
	"huge-reply": func(ctx context.Context, c net.Conn) {
		c.Write([]byte{0xFF})
		c.Write([]byte(`{"return":"`))
		chunk := bytes.Repeat([]byte("a"), 64<<10)
		for ctx.Err() == nil {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	},
	"huge-lines": func(ctx context.Context, c net.Conn) {
		line := append(bytes.Repeat([]byte("z"), 4<<20), '\n')
		for ctx.Err() == nil {
			if _, err := c.Write(line); err != nil {
				return
			}
		}
	},
	"ff-storm": func(ctx context.Context, c net.Conn) {
		chunk := bytes.Repeat([]byte{0xFF}, 64<<10)
		for ctx.Err() == nil {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	},
	"silence": func(ctx context.Context, c net.Conn) {
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	},
}

func TestHostileGuestsCannotHangTheHost(t *testing.T) {
	for name, guest := range hostileGuests {
		t.Run(name, func(t *testing.T) {
			path := serveSocket(t, guest)
			c := qga.NewClient(path, qga.ClientOptions{CallTimeout: 300 * time.Millisecond, MaxReply: 1 << 20, Logger: quietLogger()})
			t.Cleanup(func() { c.Close() })

			done := make(chan error, 1)
			go func() {
				_, err := c.Ping(context.Background())
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("Ping against a hostile guest succeeded")
				}
			case <-time.After(long):
				t.Fatal("Ping against a hostile guest hung")
			}

			w := qga.NewWatcher(c, qga.WatcherOptions{Interval: 100 * time.Millisecond, Logger: quietLogger()})
			ctx, cancel := context.WithCancel(context.Background())
			stopped := make(chan struct{})
			go func() { w.Run(ctx); close(stopped) }()
			defer func() { cancel(); <-stopped }()

			want := qga.StateUnresponsive
			if name == "silence" {
				// Nothing ever came back: no agent, as far as the host can tell.
				want = qga.StateNone
			}
			waitFor(t, func() bool {
				// Info answers at once even while a ping is stuck.
				info := infoWithin(t, w)
				return info.State == want && c.Stats().LastFail.After(time.Time{})
			}, "agent state "+want)
			if w.Responsive() {
				t.Error("Responsive() = true for a hostile guest")
			}
		})
	}
}

// infoWithin calls Info and fails the test if it does not return at once
// (2 s, as a vmhost status answer is allowed).
func infoWithin(t *testing.T, w *qga.Watcher) *agentInfoView {
	t.Helper()
	ch := make(chan *agentInfoView, 1)
	go func() { ch <- w.Info() }()
	select {
	case info := <-ch:
		return info
	case <-time.After(2 * time.Second):
		t.Fatal("Watcher.Info blocked")
		return nil
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(long)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", long, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// switchable forwards a real agent's replies until it is told to go silent
// or to send garbage instead.
type switchable struct {
	net.Conn
	mode *atomic.Value // "ok", "silent", "garbage"
}

func (s *switchable) Write(b []byte) (int, error) {
	switch s.mode.Load() {
	case "silent":
		return len(b), nil
	case "garbage":
		s.Conn.Write([]byte(strings.Repeat("\xff}{", 100)))
		return len(b), nil
	}
	return s.Conn.Write(b)
}

func TestWatcherFollowsAnAgentThatHangsAndRecovers(t *testing.T) {
	mode := &atomic.Value{}
	mode.Store("ok")
	path := serveSocket(t, func(ctx context.Context, c net.Conn) {
		agent.ServeConn(ctx, &switchable{Conn: c, mode: mode}, agent.Options{Logger: quietLogger()})
	})
	c := qga.NewClient(path, qga.ClientOptions{CallTimeout: 300 * time.Millisecond, Logger: quietLogger()})
	t.Cleanup(func() { c.Close() })
	w := qga.NewWatcher(c, qga.WatcherOptions{Interval: 100 * time.Millisecond, Logger: quietLogger()})
	if got := w.Info().State; got != qga.StateNone {
		t.Errorf("state before any ping = %q, want none", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { w.Run(ctx); close(stopped) }()
	defer func() { cancel(); <-stopped }()

	waitFor(t, func() bool { return w.Info().State == qga.StateOK && w.Info().Hostname != "" }, "agent ok with facts")
	info := w.Info()
	if info.Kind != "mb-agent" || info.LastSeen == nil || info.RTTMs <= 0 || info.RTTAvgMs <= 0 || info.OS == "" {
		t.Errorf("qgaproto.Info = %+v", info)
	}
	for _, ip := range info.IPs {
		if ip == "127.0.0.1" || ip == "::1" || strings.HasPrefix(ip, "fe80:") {
			t.Errorf("qgaproto.Info lists %s; loopback and link-local are left out", ip)
		}
	}
	for _, m := range []string{"silent", "garbage"} {
		mode.Store(m)
		waitFor(t, func() bool { return w.Info().State == qga.StateUnresponsive }, "unresponsive when "+m)
		mode.Store("ok")
		waitFor(t, func() bool { return w.Info().State == qga.StateOK }, "ok again after "+m)
	}
}

func TestALongCallIsNotSilence(t *testing.T) {
	_, path := startAgent(t)
	c := qga.NewClient(path, qga.ClientOptions{CallTimeout: long, Logger: quietLogger()})
	t.Cleanup(func() { c.Close() })
	w := qga.NewWatcher(c, qga.WatcherOptions{Interval: 50 * time.Millisecond, Logger: quietLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { w.Run(ctx); close(stopped) }()
	defer func() { cancel(); <-stopped }()
	waitFor(t, func() bool { return w.Responsive() }, "agent ok")

	// guest-file-read of an empty FIFO blocks the (sequential) agent until
	// the test writes: one call holds the channel far longer than
	// interval+grace, and the Watcher's pings queue behind it.
	fifo := t.TempDir() + "/fifo"
	if err := mkfifo(fifo); err != nil {
		testenv.Need(t, fmt.Sprintf("mkfifo: %v", err))
	}
	writer, err := openRDWR(fifo)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	var h int64
	if err := c.Call(context.Background(), "guest-file-open", qgaproto.FileOpenArgs{Path: fifo}, &h); err != nil {
		t.Fatal(err)
	}
	readDone := make(chan error, 1)
	go func() {
		readDone <- c.Call(context.Background(), "guest-file-read", qgaproto.FileReadArgs{Handle: h, Count: 5}, nil)
	}()
	waitFor(t, func() bool { return c.Stats().Busy }, "the read to hold the channel")
	until := time.Now().Add(600 * time.Millisecond) // 4× interval+grace
	for time.Now().Before(until) {
		if s := w.Info().State; s != qga.StateOK {
			t.Fatalf("state %q while a call is in progress, want ok", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
	writer.Write([]byte("hello"))
	if err := <-readDone; err != nil {
		t.Fatalf("guest-file-read: %v", err)
	}
	if s := w.Info().State; s != qga.StateOK {
		t.Errorf("state after the long call = %q", s)
	}
}

// TestFloodsAreCutShort checks that a call against a flooding guest ends
// once the guest has sent more than the call's replies could need, not at
// the call's (long) timeout, so a flood costs the host little CPU.
func TestFloodsAreCutShort(t *testing.T) {
	for _, name := range []string{"garbage", "huge-lines", "ff-storm", "huge-reply"} {
		t.Run(name, func(t *testing.T) {
			path := serveSocket(t, hostileGuests[name])
			c := qga.NewClient(path, qga.ClientOptions{CallTimeout: long, MaxReply: 1 << 20, Logger: quietLogger()})
			t.Cleanup(func() { c.Close() })
			_, err := c.Ping(context.Background())
			if err == nil || !strings.Contains(err.Error(), "flood") {
				t.Errorf("Ping against a %s flood = %v, want the flood error", name, err)
			}
		})
	}
}

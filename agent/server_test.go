package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mbvm/mb/agent/internal/frame"
	"github.com/mbvm/mb/agent/qgaproto"
)

// callTimeout is generous: a loaded CI machine must not fail a correct test.
const callTimeout = 60 * time.Second

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// socketPair returns the two ends of a real unix socket pair.
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	// SOCK_CLOEXEC is Linux-only: set close-on-exec under ForkLock instead,
	// so a child started meanwhile does not inherit the ends.
	syscall.ForkLock.RLock()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err == nil {
		unix.CloseOnExec(fds[0])
		unix.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatalf("FileConn: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	return conn(fds[0]), conn(fds[1])
}

// guest is a test's view of a running server: a connection and a frame
// reader for the replies.
type guest struct {
	t    *testing.T
	s    *server
	conn net.Conn
	fr   *frame.Reader
}

func startGuest(t *testing.T) *guest {
	t.Helper()
	return startGuestWith(t, Options{})
}

// startGuestWith serves an agent made with opts (its logger set here).
func startGuestWith(t *testing.T, opts Options) *guest {
	t.Helper()
	opts.Logger = testLogger(t)
	s := newServer(opts)
	s.shutdown = func(context.Context, string) error { return errors.New("shutdown not stubbed in this test") }
	hostEnd, guestEnd := socketPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.serveStream(ctx, guestEnd, guestEnd)
	}()
	t.Cleanup(func() {
		cancel()
		guestEnd.Close()
		<-done
	})
	return &guest{t: t, s: s, conn: hostEnd, fr: frame.NewReader(hostEnd, 64<<20)}
}

func (g *guest) send(raw string) {
	g.t.Helper()
	g.conn.SetWriteDeadline(time.Now().Add(callTimeout))
	if _, err := io.WriteString(g.conn, raw); err != nil {
		g.t.Fatalf("write: %v", err)
	}
}

// next reads the next reply object, skipping delimiters.
func (g *guest) next() qgaproto.Reply {
	g.t.Helper()
	g.conn.SetReadDeadline(time.Now().Add(callTimeout))
	for {
		k, obj, err := g.fr.Next()
		if err != nil {
			g.t.Fatalf("read reply: %v", err)
		}
		if k != frame.Object {
			continue
		}
		var r qgaproto.Reply
		if err := json.Unmarshal(obj, &r); err != nil {
			g.t.Fatalf("reply %s: %v", obj, err)
		}
		return r
	}
}

// call sends a command and decodes its return value into out (may be nil).
func (g *guest) call(execute string, args any, out any) *qgaproto.Error {
	g.t.Helper()
	b, err := json.Marshal(qgaproto.Request{Execute: execute, Arguments: args})
	if err != nil {
		g.t.Fatal(err)
	}
	g.send(string(b))
	r := g.next()
	if r.Error != nil {
		return r.Error
	}
	if out != nil {
		if err := json.Unmarshal(r.Return, out); err != nil {
			g.t.Fatalf("%s: decode %s: %v", execute, r.Return, err)
		}
	}
	return nil
}

func (g *guest) mustCall(execute string, args any, out any) {
	g.t.Helper()
	if e := g.call(execute, args, out); e != nil {
		g.t.Fatalf("%s: %v", execute, e)
	}
}

func TestPingAndSync(t *testing.T) {
	g := startGuest(t)
	var empty map[string]any
	g.mustCall("guest-ping", nil, &empty)
	if len(empty) != 0 {
		t.Errorf("guest-ping returned %v, want {}", empty)
	}

	g.send(`{"execute":"guest-sync-delimited","arguments":{"id":123456789}}`)
	g.conn.SetReadDeadline(time.Now().Add(callTimeout))
	b := make([]byte, 1)
	if _, err := io.ReadFull(g.conn, b); err != nil || b[0] != 0xFF {
		t.Fatalf("first byte of guest-sync-delimited reply = %x, %v; want ff", b, err)
	}
	if r := g.next(); string(r.Return) != "123456789" {
		t.Errorf("guest-sync-delimited returned %s", r.Return)
	}
	var id int64
	g.mustCall("guest-sync", qgaproto.SyncArgs{ID: 42}, &id)
	if id != 42 {
		t.Errorf("guest-sync returned %d, want 42", id)
	}
	if e := g.call("guest-sync", map[string]any{}, nil); e == nil || e.Class != qgaproto.ClassGenericError {
		t.Errorf("guest-sync without id: error %v, want GenericError", e)
	}
}

func TestInfoListsCommandsAndExtensions(t *testing.T) {
	g := startGuest(t)
	var info qgaproto.Info
	g.mustCall("guest-info", nil, &info)
	if info.Version != Version {
		t.Errorf("version = %q", info.Version)
	}
	for _, name := range []string{"guest-ping", "guest-exec", "guest-exec-status", "guest-shutdown",
		"guest-network-get-interfaces", "guest-file-open", qgaproto.MetricsCommand} {
		if !info.Supports(name) {
			t.Errorf("guest-info does not list %s", name)
		}
	}
	for _, c := range info.SupportedCommands {
		if c.Name == "guest-shutdown" && c.SuccessResponse {
			t.Error("guest-shutdown listed with success-response true; it sends no reply")
		}
	}
}

func TestSystemInfoCommands(t *testing.T) {
	g := startGuest(t)
	var hn qgaproto.HostName
	g.mustCall("guest-get-host-name", nil, &hn)
	if want, _ := os.Hostname(); hn.HostName != want {
		t.Errorf("host-name = %q, want %q", hn.HostName, want)
	}
	var osi qgaproto.OSInfo
	g.mustCall("guest-get-osinfo", nil, &osi)
	var u unix.Utsname
	unix.Uname(&u)
	if osi.KernelRelease != unix.ByteSliceToString(u.Release[:]) || osi.Machine == "" {
		t.Errorf("osinfo = %+v", osi)
	}
	var ns int64
	g.mustCall("guest-get-time", nil, &ns)
	if ns <= 0 {
		t.Errorf("guest-get-time = %d", ns)
	}
	var ifaces []qgaproto.Interface
	g.mustCall("guest-network-get-interfaces", nil, &ifaces)
	found := false
	for _, i := range ifaces {
		for _, a := range i.IPAddresses {
			if i.Name == "lo" && a.Address == "127.0.0.1" && a.Type == "ipv4" && a.Prefix == 8 {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("interfaces %+v lack lo with 127.0.0.1/8", ifaces)
	}
}

func TestMetrics(t *testing.T) {
	g := startGuest(t)
	var m qgaproto.Metrics
	g.mustCall(qgaproto.MetricsCommand, nil, &m)
	if m.Source != "mb-agent" || m.CPU == nil || m.CPU.CPUs < 1 || m.CPU.Total() == 0 {
		t.Errorf("cpu = %+v", m.CPU)
	}
	if m.Memory == nil || m.Memory.TotalBytes == 0 || m.Memory.UsedBytes+m.Memory.AvailableBytes != m.Memory.TotalBytes {
		t.Errorf("memory = %+v", m.Memory)
	}
	if len(m.LoadAvg) != 3 || m.UptimeSeconds <= 0 || len(m.Interfaces) == 0 {
		t.Errorf("metrics = %+v", m)
	}
	for _, fs := range m.Filesystems {
		if fs.Type == "proc" || fs.Type == "sysfs" || fs.TotalBytes == 0 {
			t.Errorf("filesystem %+v should have been skipped", fs)
		}
	}
}

func TestErrors(t *testing.T) {
	g := startGuest(t)
	if e := g.call("no-such-command", nil, nil); e == nil || e.Class != qgaproto.ClassCommandNotFound {
		t.Errorf("unknown command: error %v, want CommandNotFound", e)
	}
	if e := g.call("guest-ping", map[string]any{"bogus": 1}, nil); e == nil || e.Class != qgaproto.ClassGenericError {
		t.Errorf("unknown argument: error %v, want GenericError", e)
	}
	if e := g.call("guest-exec", map[string]any{"arg": []string{"x"}}, nil); e == nil || !strings.Contains(e.Desc, "path") {
		t.Errorf("guest-exec without path: error %v, want one naming path", e)
	}
	if e := g.call("guest-exec", map[string]any{"path": "true", "input-data": "!!notbase64"}, nil); e == nil {
		t.Error("bad base64 input-data: want an error")
	}
	g.send(`{"execute": 5}`)
	if r := g.next(); r.Error == nil || r.Error.Class != qgaproto.ClassGenericError {
		t.Errorf("execute not a string: reply %+v", r)
	}
	g.mustCall("guest-ping", nil, nil)
}

func TestOversizedRequestIsRefused(t *testing.T) {
	g := startGuest(t)
	big := `{"execute":"guest-ping","arguments":{"x":"` + strings.Repeat("a", 2*MaxRequestSize) + `"}}`
	sent := make(chan error, 1)
	go func() {
		_, err := io.WriteString(g.conn, big)
		sent <- err
	}()
	r := g.next()
	if err := <-sent; err != nil {
		t.Fatalf("write the oversized request: %v", err)
	}
	if r.Error == nil || !strings.Contains(r.Error.Desc, "larger") {
		t.Fatalf("oversized request: reply %+v, want an error saying it is too large", r)
	}
	g.mustCall("guest-ping", nil, nil)
}

func TestGarbageThenResync(t *testing.T) {
	g := startGuest(t)
	// Garbage between objects is skipped silently, a half object is
	// dropped, a 0xFF resets the parser.
	g.send("hello ]]] 12 \"x\" \n\x00\x01" + `{"execute":"guest-ping","arg` + "\xff")
	g.send(`{"execute":"guest-sync-delimited","arguments":{"id":7}}`)
	if r := g.next(); string(r.Return) != "7" {
		t.Fatalf("after garbage: reply %+v, want return 7", r)
	}
	// A request cut inside an object, then a fresh one: the broken one gets
	// an error reply and the fresh one is answered.
	g.send(`{"execute":"guest-ping","arguments":{"a":1{"execute":"guest-sync","arguments":{"id":8}}`)
	if r := g.next(); r.Error == nil {
		t.Errorf("broken request: reply %+v, want an error", r)
	}
	if r := g.next(); string(r.Return) != "8" {
		t.Errorf("fresh request after a broken one: reply %+v", r)
	}
}

func TestRequestsWithoutNewlinesAndIDEcho(t *testing.T) {
	g := startGuest(t)
	g.send(`{"execute":"guest-sync","arguments":{"id":1},"id":"a"}{"execute":"guest-sync","arguments":{"id":2}}`)
	r1, r2 := g.next(), g.next()
	if string(r1.Return) != "1" || string(r2.Return) != "2" {
		t.Errorf("replies %s %s", r1.Return, r2.Return)
	}
	var withID struct {
		ID string `json:"id"`
	}
	g.send(`{"execute":"guest-ping","id":"abc"}`)
	g.conn.SetReadDeadline(time.Now().Add(callTimeout))
	_, obj, err := g.fr.Next()
	if err != nil || json.Unmarshal(obj, &withID) != nil || withID.ID != "abc" {
		t.Errorf("id not echoed: %s %v", obj, err)
	}
}

func TestShutdownSendsNoReplyOnSuccess(t *testing.T) {
	g := startGuest(t)
	modes := make(chan string, 4)
	g.s.shutdown = func(_ context.Context, mode string) error {
		modes <- mode
		return nil
	}
	g.send(`{"execute":"guest-shutdown","arguments":{"mode":"reboot"}}`)
	g.send(`{"execute":"guest-sync","arguments":{"id":99}}`)
	if r := g.next(); string(r.Return) != "99" {
		t.Fatalf("first reply after guest-shutdown = %+v, want the sync's 99 (no shutdown reply)", r)
	}
	if m := <-modes; m != "reboot" {
		t.Errorf("mode = %q", m)
	}
	g.send(`{"execute":"guest-shutdown"}{"execute":"guest-ping"}`)
	if r := g.next(); r.Error != nil {
		t.Fatalf("reply after guest-shutdown = %+v", r)
	}
	if m := <-modes; m != "powerdown" {
		t.Errorf("default mode = %q, want powerdown", m)
	}
	if e := g.call("guest-shutdown", qgaproto.ShutdownArgs{Mode: "explode"}, nil); e == nil || e.Class != qgaproto.ClassGenericError {
		t.Errorf("bad mode: error %v", e)
	}
	g.s.shutdown = func(context.Context, string) error { return errors.New("no init") }
	if e := g.call("guest-shutdown", nil, nil); e == nil || !strings.Contains(e.Desc, "no init") {
		t.Errorf("failed shutdown: error %v, want one carrying the cause", e)
	}
}

func TestShutdownCommand(t *testing.T) {
	has := func(paths ...string) func(string) bool {
		return func(p string) bool {
			for _, q := range paths {
				if p == q {
					return true
				}
			}
			return false
		}
	}
	tests := []struct {
		mode  string
		exist func(string) bool
		want  string
	}{
		{"powerdown", has("/run/systemd/system"), "systemctl [poweroff]"},
		{"reboot", has("/sbin/shutdown"), "shutdown [-r now]"},
		{"halt", has(), "halt []"},
		{"powerdown", has(), "poweroff []"},
	}
	for _, tt := range tests {
		name, args := shutdownCommand(tt.mode, tt.exist)
		if got := name + " [" + strings.Join(args, " ") + "]"; got != tt.want {
			t.Errorf("shutdownCommand(%s) = %s, want %s", tt.mode, got, tt.want)
		}
	}
}

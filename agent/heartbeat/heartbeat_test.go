package heartbeat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mbvm/mb/agent/plugins"
	"github.com/mbvm/mb/internal/hbcwire"
)

// wait bounds every wait of these tests: generous for a loaded machine.
const wait = 2 * time.Minute

// got is one datagram the test server received.
type got struct {
	m    *hbcwire.Message
	from *net.UDPAddr
	raw  []byte
}

// server is a UDP server speaking the receiver's side of the protocol:
// it decodes every datagram, checks signatures when it has a key, and
// answers each HTB with an ACK.
type server struct {
	t    *testing.T
	conn *net.UDPConn
	key  []byte
	in   chan got
	// requestUpdates is how many ACKs carry request_update=1.
	mu             sync.Mutex
	requestUpdates int
	silent         bool
}

func newServer(t *testing.T, network, addr string, key []byte) *server {
	t.Helper()
	conn, err := net.ListenUDP(network, &net.UDPAddr{IP: net.ParseIP(addr)})
	if err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, conn: conn, key: key, in: make(chan got, 1000)}
	done := make(chan struct{})
	t.Cleanup(func() { conn.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 70000)
		for {
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			raw := append([]byte(nil), buf[:n]...)
			m, err := hbcwire.Decode(raw)
			if err != nil {
				t.Errorf("undecodable datagram %q: %v", raw, err)
				continue
			}
			if key != nil {
				if err := m.Verify(key); err != nil {
					t.Errorf("%s not signed with the key: %v", m.ID, err)
				}
			}
			if m.ID == hbcwire.HTB {
				s.answer(m, from)
			}
			select {
			case s.in <- got{m, from, raw}:
			default:
			}
		}
	}()
	return s
}

func (s *server) port() int { return s.conn.LocalAddr().(*net.UDPAddr).Port }

func (s *server) answer(m *hbcwire.Message, to *net.UDPAddr) {
	s.mu.Lock()
	ru := s.requestUpdates > 0
	if ru {
		s.requestUpdates--
	}
	silent := s.silent
	s.mu.Unlock()
	if silent {
		return
	}
	ack := hbcwire.New(hbcwire.ACK)
	if v, ok := m.Get("timestamp"); ok {
		ack.Fields = append(ack.Fields, hbcwire.Field{Key: "timestamp", Value: v})
	}
	if v, ok := m.Get("seq"); ok {
		ack.Fields = append(ack.Fields, hbcwire.Field{Key: "seq", Value: v})
	}
	ack.Add("sent", float64(time.Now().UnixNano())/1e9)
	if ru {
		ack.Add("request_update", true)
	}
	s.send(ack, to)
}

func (s *server) send(m *hbcwire.Message, to *net.UDPAddr) {
	b, err := hbcwire.Encode(m, hbcwire.EncodeOptions{Key: s.key})
	if err != nil {
		s.t.Error(err)
		return
	}
	if _, err := s.conn.WriteToUDP(b, to); err != nil && !errors.Is(err, net.ErrClosed) {
		s.t.Error(err)
	}
}

// next returns the next datagram that matches, failing after wait.
func (s *server) next(t *testing.T, what string, match func(*hbcwire.Message) bool) got {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case g := <-s.in:
			if match(g.m) {
				return g
			}
		case <-deadline:
			t.Fatalf("no %s within %s", what, wait)
		}
	}
}

func isHTB(m *hbcwire.Message) bool { return m.ID == hbcwire.HTB }

func isPLG(name string) func(*hbcwire.Message) bool {
	return func(m *hbcwire.Message) bool { return m.ID == hbcwire.PLG && m.String("plugin") == name }
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func logger(buf *syncBuf) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// run starts a client and stops it at the end of the test.
func run(t *testing.T, o Options) (stop func()) {
	t.Helper()
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(wait):
				t.Error("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func TestHeartbeatsPluginsAndShutdown(t *testing.T) {
	key := []byte("shared-secret")
	srv := newServer(t, "udp4", "127.0.0.1", key)
	srv.mu.Lock()
	srv.requestUpdates = 1
	srv.mu.Unlock()
	ps, err := plugins.Build(plugins.Config{"cpu_monitor": {"interval": 0.05}}, "9.9", nil)
	if err != nil {
		t.Fatal(err)
	}
	var log syncBuf
	stop := run(t, Options{
		Servers: []string{fmt.Sprintf("127.0.0.1:%d", srv.port())},
		Config:  Config{Interval: 20 * time.Millisecond, Key: string(key), Owner: "alice"},
		Name:    "host-a", Boot: true, Logger: logger(&log), Plugins: ps,
	})
	first := srv.next(t, "first HTB", isHTB)
	if !first.m.Bool("boot") || first.m.String("name") != "host-a" || first.m.String("owner") != "alice" || !first.m.Compressed {
		t.Errorf("first HTB %+v, want a zlib HTB with boot=1, name host-a, owner alice", first.m.Fields)
	}
	if iv, _ := first.m.Int("interval"); iv != 1 {
		t.Errorf("interval %d, want 1 (20ms rounded up to whole seconds)", iv)
	}
	// os_info at start, and again after the ACK that asked for it.
	srv.next(t, "os_info", isPLG("os_info"))
	osi := srv.next(t, "os_info resent on request_update", isPLG("os_info"))
	if osi.m.String("hbc_version") != "9.9" || osi.m.String("name") != "host-a" {
		t.Errorf("os_info %+v", osi.m.Fields)
	}
	cpu := srv.next(t, "cpu_monitor", isPLG("cpu_monitor"))
	if _, err := cpu.m.Float("cpu_percent"); err != nil {
		t.Errorf("cpu_monitor: %v", err)
	}
	// Later heartbeats report the RTT and the ACKs, and no boot.
	later := srv.next(t, "an HTB with rtt", func(m *hbcwire.Message) bool {
		_, ok := m.Get("rtt")
		return isHTB(m) && ok
	})
	rtt, _ := later.m.Float("rtt")
	acks, _ := later.m.Int("acks")
	if rtt <= 0 || rtt > 60 || acks < 1 || later.m.Bool("boot") {
		t.Errorf("later HTB rtt=%v acks=%d boot=%v", rtt, acks, later.m.Bool("boot"))
	}
	if _, ok := later.m.Get("ack_sent"); !ok {
		t.Errorf("later HTB lacks ack_sent: %+v", later.m.Fields)
	}
	stop()
	srv.next(t, "the shutdown HTB", func(m *hbcwire.Message) bool { return isHTB(m) && m.Bool("shutdown") })
}

// Every address of every server gets the heartbeats: two IPv4 servers,
// one by name, and an IPv6 one unless -4 is asked for.
func TestEveryAddressOfEveryServer(t *testing.T) {
	a := newServer(t, "udp4", "127.0.0.1", nil)
	b := newServer(t, "udp4", "127.0.0.1", nil)
	servers := []string{fmt.Sprintf("127.0.0.1:%d", a.port()), fmt.Sprintf("localhost:%d", b.port())}
	var c *server
	if l, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err == nil {
		l.Close()
		c = newServer(t, "udp6", "::1", nil)
		servers = append(servers, fmt.Sprintf("[::1]:%d", c.port()))
	}
	var log syncBuf
	run(t, Options{Servers: servers, Config: Config{Interval: 20 * time.Millisecond}, Name: "h", Logger: logger(&log), Plugins: []plugins.Scheduled{}})
	for i, s := range []*server{a, b, c} {
		if s == nil {
			continue
		}
		if g := s.next(t, fmt.Sprintf("an HTB at server %d", i), isHTB); g.m.Bool("boot") {
			t.Errorf("boot=1 without Boot")
		}
	}
	// -4 leaves the IPv6 server out.
	if c != nil {
		cl, err := New(Options{Servers: servers[2:], Family: 4, Name: "h", Logger: logger(&log), Plugins: []plugins.Scheduled{}})
		if err != nil {
			t.Fatal(err)
		}
		cl.resolve(context.Background())
		if len(cl.peers) != 0 {
			t.Errorf("-4 opened %v", cl.peers[0].addr)
		}
		cl.close()
	}
}

func TestOrdersNeedPermissionAndSignature(t *testing.T) {
	key := []byte("k3y")
	dir := t.TempDir()
	marker := func(name string) string { return filepath.Join(dir, name) }
	cmd := func(id, command string, ts time.Time) *hbcwire.Message {
		return hbcwire.New(hbcwire.CMD).Add("id", id).Add("command", command).Add("timestamp", float64(ts.UnixNano())/1e9)
	}
	send := func(s *server, to *net.UDPAddr, m *hbcwire.Message, k []byte) {
		b, err := hbcwire.Encode(m, hbcwire.EncodeOptions{Key: k})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.conn.WriteToUDP(b, to); err != nil {
			t.Fatal(err)
		}
	}
	waitLog := func(log *syncBuf, want string) {
		t.Helper()
		for deadline := time.Now().Add(wait); !strings.Contains(log.String(), want); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("log lacks %q:\n%s", want, log.String())
			}
		}
	}

	// Not allowed: a signed command is logged and ignored.
	srv := newServer(t, "udp4", "127.0.0.1", key)
	var log syncBuf
	run(t, Options{Servers: []string{fmt.Sprintf("127.0.0.1:%d", srv.port())}, Config: Config{Interval: time.Hour, Key: string(key)},
		Name: "h", Logger: logger(&log), Plugins: []plugins.Scheduled{}})
	from := srv.next(t, "HTB", isHTB).from
	send(srv, from, cmd("1", "touch "+marker("off"), time.Now()), key)
	waitLog(&log, "mb-agent runs without --allow-commands")

	// Allowed: unsigned, wrongly signed and stale commands are refused,
	// a good one runs once and its result comes back.
	srv2 := newServer(t, "udp4", "127.0.0.1", key)
	var log2 syncBuf
	run(t, Options{Servers: []string{fmt.Sprintf("127.0.0.1:%d", srv2.port())}, Config: Config{Interval: time.Hour, Key: string(key)},
		Name: "h", AllowCommands: true, Logger: logger(&log2), Plugins: []plugins.Scheduled{}})
	from2 := srv2.next(t, "HTB", isHTB).from
	send(srv2, from2, cmd("2", "touch "+marker("unsigned"), time.Now()), nil)
	send(srv2, from2, cmd("3", "touch "+marker("wrongkey"), time.Now()), []byte("other"))
	send(srv2, from2, cmd("4", "touch "+marker("stale"), time.Now().Add(-time.Hour)), key)
	waitLog(&log2, "whose timestamp is missing or over 5 minutes off")
	if n := strings.Count(log2.String(), "not signed with the shared hmac_key"); n != 2 {
		t.Errorf("%d refusals of unsigned commands logged, want 2:\n%s", n, log2.String())
	}
	good := cmd("5", "touch "+marker("good")+"; echo hi; exit 3", time.Now())
	send(srv2, from2, good, key)
	res := srv2.next(t, "the command's result", isPLG("command"))
	if code, _ := res.m.Int("exit_code"); code != 3 || res.m.String("output") != "hi\n" || res.m.String("id") != "5" {
		t.Errorf("command result %+v", res.m.Fields)
	}
	send(srv2, from2, good, key)
	waitLog(&log2, "ignored a repeated command")
	for _, name := range []string{"off", "unsigned", "wrongkey", "stale"} {
		if _, err := os.Stat(marker(name)); err == nil {
			t.Errorf("the %s command ran", name)
		}
	}
	if _, err := os.Stat(marker("good")); err != nil {
		t.Errorf("the good command did not run: %v", err)
	}
	// An update is refused without --allow-update, signed or not.
	upd := hbcwire.New(hbcwire.UPD).Add("id", "u1").Add("url", "http://127.0.0.1:1/install.sh").Add("timestamp", float64(time.Now().UnixNano())/1e9)
	send(srv2, from2, upd, key)
	waitLog(&log2, "mb-agent runs without --allow-update")
}

func TestSendMessage(t *testing.T) {
	srv := newServer(t, "udp4", "127.0.0.1", nil)
	var log syncBuf
	c, err := New(Options{Servers: []string{fmt.Sprintf("127.0.0.1:%d", srv.port())}, Name: "h", Logger: logger(&log), Plugins: []plugins.Scheduled{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendMessage(context.Background(), "maintenance; back at 10", wait); err != nil {
		t.Fatal(err)
	}
	g := srv.next(t, "the message", isHTB)
	if g.m.String("message") != "maintenance; back at 10" {
		t.Errorf("message %q", g.m.String("message"))
	}
	srv.mu.Lock()
	srv.silent = true
	srv.mu.Unlock()
	c, err = New(Options{Servers: []string{fmt.Sprintf("127.0.0.1:%d", srv.port())}, Name: "h", Logger: logger(&log), Plugins: []plugins.Scheduled{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendMessage(context.Background(), "x", 50*time.Millisecond); err == nil || !strings.Contains(err.Error(), "no server acknowledged") {
		t.Errorf("unanswered message: %v", err)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{}, "no server given"},
		{Options{Servers: []string{"h:0"}}, "port"},
		{Options{Servers: []string{"h:x"}}, "port"},
		{Options{Servers: []string{"a:b:c"}}, "HOST:PORT"},
		{Options{Servers: []string{"h"}, Family: 5}, "use 4 or 6"},
		{Options{Servers: []string{"h"}, AllowCommands: true}, "hmac_key"},
		{Options{Servers: []string{"h"}, AllowUpdate: true}, "hmac_key"},
	} {
		c.o.Plugins = []plugins.Scheduled{}
		if _, err := New(c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want an error with %q", c.o, err, c.want)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	js := write("hbc.json", `{"hb_port": 50100, "interval": 2, "owner": "bob", "hmac_key": "s",
		"plugins": {"disk_monitor": {"mounts": ["/"]}, "network_monitor": {"skip_interfaces": ["lo", "docker0"]}}, "server": "x"}`)
	ym := write("hbc.yaml", "hb_port: 50100\ninterval: 2\nowner: bob\nhmac_key: s\nplugins:\n  disk_monitor:\n    mounts: [/]\n  network_monitor:\n    skip_interfaces: [lo, docker0]\n  ping_monitor:\n")
	for _, p := range []string{js, ym} {
		var log syncBuf
		c, err := LoadConfig(p, logger(&log))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if c.Port != 50100 || c.Interval != 2*time.Second || c.Owner != "bob" || c.Key != "s" || c.Path != p {
			t.Errorf("%s: %+v", p, c)
		}
		ps, err := plugins.Build(c.Plugins, "t", nil)
		if err != nil {
			t.Fatalf("%s: plugins: %v", p, err)
		}
		if len(ps) != 5 {
			t.Errorf("%s: %d plugins", p, len(ps))
		}
		if p == js && !strings.Contains(log.String(), "server") {
			t.Errorf("unknown key not logged: %s", log.String())
		}
	}
	for text, want := range map[string]string{
		`{"hb_port": 70000}`:     "port number",
		`{"interval": -1}`:       "seconds",
		`{"plugins": [1]}`:       "map of plugin names",
		`{"owner": [1]}`:         "string",
		"hb_port: [\n":           "neither valid JSON nor YAML",
		`{"plugins": {"a": 1}}`:  "map of options",
		`{"interval": "often"}`:  "number",
		`{"hb_port": 50003.5}`:   "port number",
		`{"hmac_key": {"a": 1}}`: "string",
	} {
		if _, err := LoadConfig(write("bad.json", text), nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config %s: %v, want an error with %q", text, err, want)
		}
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.json"), nil); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing config: %v", err)
	}
	// Without -c and without the default files: the defaults.
	t.Setenv("HOME", t.TempDir())
	c, err := LoadConfig("", nil)
	if err != nil || c.Port != DefaultPort || c.Interval != DefaultInterval || c.Path != "" {
		t.Errorf("defaults: %+v, %v", c, err)
	}
}

// Signed HTBs must carry increasing timestamps (the receiver drops the
// others as replays), also when several go out in the same instant.
func TestTimestampsIncrease(t *testing.T) {
	c, err := New(Options{Servers: []string{"h"}, Name: "h", Plugins: []plugins.Scheduled{}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	last := 0.0
	for i := range 5 {
		m := hbcwire.New(hbcwire.HTB).Add("timestamp", c.nextTimestamp(now))
		b, err := hbcwire.Encode(m, hbcwire.EncodeOptions{Plain: true})
		if err != nil {
			t.Fatal(err)
		}
		d, err := hbcwire.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		ts, _ := d.Float("timestamp")
		if ts <= last {
			t.Fatalf("timestamp %d on the wire %.5f, not above the previous %.5f", i, ts, last)
		}
		last = ts
	}
}

package fleet

import (
	"bytes"
	"compress/zlib"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/internal/hbcwire"
	"github.com/mbvm/mb/monitor"
)

// pyHBC is an hbc client written from the wire description in the README
// (not from internal/hbcwire): plain and zlib payloads, 5-decimal floats,
// @-JSON, 1/0 booleans.
const pyHBC = `
import json, socket, sys, time, zlib
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)

def enc(mid, fields, compress):
    parts = []
    for k, v in fields:
        if isinstance(v, bool):
            v = '1' if v else '0'
        elif isinstance(v, float):
            v = '%.5f' % v
        elif isinstance(v, (list, dict)):
            v = '@' + json.dumps(v).replace(';', '\\u003b')
        else:
            v = str(v)
        parts.append('%s=%s' % (k, v))
    payload = ';'.join(parts).encode()
    if compress:
        payload = zlib.compress(payload)
    return b'!' + mid.encode() + b': ' + payload

def dec(b):
    head, _, payload = b.partition(b':')
    if payload.startswith(b' '):
        payload = payload[1:]
    compressed = True
    try:
        payload = zlib.decompress(payload)
    except zlib.error:
        compressed = False
    fields = {}
    for part in payload.decode().split(';'):
        if '=' in part:
            k, v = part.split('=', 1)
            fields[k] = v
    return {'id': head[1:].decode(), 'compressed': compressed, 'fields': fields}

def exchange(msg):
    for _ in range(60):
        s.sendto(msg, ('127.0.0.1', port))
        try:
            b, _ = s.recvfrom(65536)
            return dec(b)
        except socket.timeout:
            continue
    raise SystemExit('no answer to %r' % msg[:40])

out = {}
out['plain'] = exchange(enc('HTB', [('name', 'py-plain'), ('timestamp', time.time()), ('interval', 10), ('seq', 1)], False))
disks = {'/': {'percent': 41.5, 'label': 'root;fs'}}
for i in range(600):
    s.sendto(enc('PLG', [('name', 'py-zlib'), ('plugin', 'cpu_monitor'), ('cpu_percent', 12.5), ('per_core', [10.0, 15.0]), ('on', True)], True), ('127.0.0.1', port))
    s.sendto(enc('PLG', [('name', 'py-zlib'), ('plugin', 'disk_monitor'), ('partitions', disks)], True), ('127.0.0.1', port))
    a = exchange(enc('HTB', [('name', 'py-zlib'), ('timestamp', time.time()), ('interval', 10), ('seq', i)], True))
    if 'request_update' not in a['fields']:
        break
    time.sleep(0.05)
out['zlib'] = a
out['boot'] = exchange(enc('HTB', [('name', 'py-zlib'), ('timestamp', time.time()), ('interval', 10), ('boot', True), ('message', 'hello world'), ('uptime', 12.5)], True))
out['shutdown'] = exchange(enc('HTB', [('name', 'py-plain'), ('timestamp', time.time()), ('interval', 10), ('shutdown', True)], False))
print(json.dumps(out))
`

type pyAnswer struct {
	ID         string            `json:"id"`
	Compressed bool              `json:"compressed"`
	Fields     map[string]string `json:"fields"`
}

func TestHBCPythonClient(t *testing.T) {
	r := newRig(t, Settings{}, false)
	var out map[string]pyAnswer
	runPython(t, pyHBC, &out, strconv.Itoa(r.udp.Port))

	plain := out["plain"]
	if plain.ID != "ACK" || plain.Compressed || plain.Fields["seq"] != "1" || plain.Fields["request_update"] != "1" || plain.Fields["timestamp"] == "" || plain.Fields["recv"] == "" {
		t.Errorf("ACK to a plain HTB: %+v", plain)
	}
	z := out["zlib"]
	if z.ID != "ACK" || !z.Compressed {
		t.Errorf("ACK to a zlib HTB: %+v", z)
	}
	if _, ok := z.Fields["request_update"]; ok {
		t.Errorf("ACK still asks for an update after plugin data: %+v", z)
	}
	// The two PLGs may be read by different receiver goroutines.
	waitFor(t, "both plugins' data", func() bool {
		h, _ := r.host("py-zlib")
		return h.Plugins["cpu_monitor"] != nil && h.Plugins["disk_monitor"] != nil
	})
	h, ok := r.host("py-zlib")
	if !ok || h.Source != SourceHBC || h.Interval != 10*time.Second || h.Reach != monitor.Up {
		t.Fatalf("py-zlib: %+v", h)
	}
	cpu := h.Plugins["cpu_monitor"]
	if cpu["cpu_percent"] != 12.5 || fmt.Sprint(cpu["per_core"]) != "[10 15]" || cpu["on"] != 1.0 {
		t.Errorf("cpu_monitor: %#v", cpu)
	}
	parts, _ := h.Plugins["disk_monitor"]["partitions"].(map[string]any)
	root, _ := parts["/"].(map[string]any)
	if root["percent"] != 41.5 || root["label"] != "root;fs" {
		t.Errorf("disk_monitor: %#v", h.Plugins["disk_monitor"])
	}
	if m := h.Plugins[PluginHBC]; m["message"] != "hello world" || m["boot"] != true || m["uptime"] != 12.5 {
		t.Errorf("boot message: %#v", m)
	}
	if len(h.Addresses) == 0 || h.Addresses[len(h.Addresses)-1].Address != "127.0.0.1" {
		t.Errorf("addresses: %+v", h.Addresses)
	}
	p, _ := r.host("py-plain")
	if p.Reach != monitor.Stopped || p.Source != SourceHBC {
		t.Errorf("py-plain after its shutdown heartbeat: %s (%s)", p.Reach, p.Source)
	}
}

// client is a Go hbc client over hbcwire.
type client struct {
	t    *testing.T
	conn *net.UDPConn
	key  []byte
	dec  hbcwire.Decoder
}

func newClient(t *testing.T, to *net.UDPAddr, key []byte) *client {
	c, err := net.DialUDP("udp", nil, to)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, conn: c, key: key}
}

func (c *client) send(m *hbcwire.Message, key []byte) {
	c.t.Helper()
	b, err := hbcwire.Encode(m, hbcwire.EncodeOptions{Key: key})
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) sendRaw(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil && !errors.Is(err, syscallEMSGSIZE) {
		c.t.Fatal(err)
	}
}

// read returns the next datagram decoded, or nil after wait.
func (c *client) read(wait time.Duration) *hbcwire.Message {
	c.t.Helper()
	buf := make([]byte, 65536)
	c.conn.SetReadDeadline(time.Now().Add(wait))
	n, err := c.conn.Read(buf)
	if err != nil {
		return nil
	}
	m, err := c.dec.Decode(buf[:n])
	if err != nil {
		c.t.Fatalf("undecodable answer %q: %v", buf[:n], err)
	}
	return m
}

// exchange sends an HTB until an ACK comes back (UDP may drop).
func (c *client) exchange(m func() *hbcwire.Message, key []byte) *hbcwire.Message {
	c.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		c.send(m(), key)
		for {
			a := c.read(time.Second)
			if a == nil {
				break
			}
			if a.ID == hbcwire.ACK {
				return a
			}
		}
	}
	c.t.Fatal("no ACK")
	return nil
}

func htb(name string, extra ...any) func() *hbcwire.Message {
	return func() *hbcwire.Message {
		m := hbcwire.New(hbcwire.HTB).Add("name", name).Add("timestamp", unixSeconds(time.Now())).Add("interval", 10)
		for i := 0; i+1 < len(extra); i += 2 {
			m.Add(extra[i].(string), extra[i+1])
		}
		return m
	}
}

func TestHBCSignedAndCommands(t *testing.T) {
	key := []byte("shared-secret")
	r := newRig(t, Settings{HMACKey: key}, false)
	c := newClient(t, r.udp, key)

	if _, err := r.f.QueueCommand("signer", "uptime"); !errors.Is(err, ErrNoHost) {
		t.Fatalf("queue for an unknown host: %v", err)
	}
	ack := c.exchange(htb("signer"), key)
	if err := ack.Verify(key); err != nil {
		t.Fatalf("ACK not signed with the shared key: %v", err)
	}
	sent, err := ack.Float("sent")
	if err != nil {
		t.Fatal(err)
	}
	// The next heartbeat echoes the ACK's send time: the server measures
	// the RTT on its own clock.
	ack = c.exchange(htb("signer", "ack_sent", sent, "ack_held", 0.0), key)
	if rtt, err := ack.Float("rtt"); err != nil || rtt <= 0 {
		t.Errorf("ACK rtt = %v, %v", rtt, err)
	}
	h, _ := r.host("signer")
	if h.RTT <= 0 {
		t.Errorf("host RTT not measured: %+v", h)
	}

	// The host signs: unsigned or wrongly signed heartbeats for it are
	// forged, and dropped.
	before := r.f.Stats()
	c.send(htb("signer")(), nil)
	c.send(htb("signer")(), []byte("wrong"))
	waitFor(t, "forged heartbeats counted", func() bool {
		s := r.f.Stats()
		return s.Unsigned > before.Unsigned && s.BadSignature > before.BadSignature
	})
	// A replayed signed heartbeat is stale.
	old := htb("signer")()
	b, _ := hbcwire.Encode(old, hbcwire.EncodeOptions{Key: key})
	c.sendRaw(b)
	c.read(time.Second)
	c.sendRaw(b)
	waitFor(t, "replay counted", func() bool { return r.f.Stats().Stale > before.Stale })

	// A queued command goes out signed after the next ACK.
	id, err := r.f.QueueCommand("signer", "uptime")
	if err != nil {
		t.Fatal(err)
	}
	c.send(htb("signer")(), key)
	var cmd *hbcwire.Message
	deadline := time.Now().Add(2 * time.Minute)
	for cmd == nil && time.Now().Before(deadline) {
		m := c.read(2 * time.Second)
		if m == nil {
			c.send(htb("signer")(), key)
			continue
		}
		if m.ID == hbcwire.CMD {
			cmd = m
		}
	}
	if cmd == nil || cmd.String("command") != "uptime" || cmd.String("id") != id || cmd.Verify(key) != nil {
		t.Fatalf("CMD: %+v", cmd)
	}
	if _, err := r.f.QueueUpdate("signer", "http://monitor:50004/install.sh"); err != nil {
		t.Fatal(err)
	}
	var upd *hbcwire.Message
	deadline = time.Now().Add(2 * time.Minute)
	for upd == nil && time.Now().Before(deadline) {
		c.send(htb("signer")(), key)
		for m := c.read(time.Second); m != nil; m = c.read(200 * time.Millisecond) {
			if m.ID == hbcwire.UPD {
				upd = m
			}
		}
	}
	if upd == nil || upd.String("url") != "http://monitor:50004/install.sh" || upd.Verify(key) != nil {
		t.Fatalf("UPD: %+v", upd)
	}
	// An unsigned host may still report (hmac_required is off)...
	c.exchange(htb("stock-hbc"), nil)
	// ...but not once it is required.
	s := *r.f.set.Load()
	s.HMACRequired = true
	if err := r.f.Reload(s); err != nil {
		t.Fatal(err)
	}
	before = r.f.Stats()
	c.send(htb("stock-hbc")(), nil)
	waitFor(t, "unsigned heartbeat refused", func() bool { return r.f.Stats().Unsigned > before.Unsigned })
}

func TestQueueNeedsKey(t *testing.T) {
	r := newRig(t, Settings{}, false)
	c := newClient(t, r.udp, nil)
	c.exchange(htb("h1"), nil)
	if _, err := r.f.QueueCommand("h1", "reboot"); !errors.Is(err, ErrNoHMACKey) {
		t.Fatalf("command queued without hmac_key: %v", err)
	}
}

func zlibOf(s string) []byte {
	var b bytes.Buffer
	w := zlib.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

// TestHBCHostile sends garbage, bombs and floods of names; every one is
// counted and dropped, a legitimate client keeps getting its ACKs, and the
// heap stays bounded.
func TestHBCHostile(t *testing.T) {
	r := newRig(t, Settings{MaxHosts: 50}, false)
	c := newClient(t, r.udp, nil)
	legit := newClient(t, r.udp, nil)
	legit.exchange(htb("legit"), nil)

	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	heapBefore := ms.HeapAlloc

	// Keep at most 50 datagrams in flight, so that even a small receive
	// buffer drops none.
	base := r.f.Stats().Datagrams
	sent := uint64(0)
	paced := func(b []byte) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for sent > 50 && r.f.Stats().Datagrams-base < sent-50 {
			if time.Now().After(deadline) {
				t.Fatalf("the receiver stopped at %d of %d datagrams", r.f.Stats().Datagrams-base, sent)
			}
			time.Sleep(time.Millisecond)
		}
		c.sendRaw(b)
		sent++
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		b := make([]byte, rng.IntN(1400)+1)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		if i%2 == 0 {
			copy(b, "!HTB: ")
		}
		paced(b)
	}
	hostile := [][]byte{
		append([]byte("!PLG: "), zlibOf("name=x;plugin=p;v="+strings.Repeat("0", 8<<20))...),          // zip bomb
		append([]byte("!PLG: "), zlibOf(strings.Repeat(";a", 500000))...),                             // 500,000 fields
		append([]byte("!PLG: "), zlibOf("name=x;plugin=p;"+strings.Repeat("f=1;", 1000000))...),       // 1,000,000 fields
		append([]byte("!PLG: "), zlibOf("name=x;plugin=p;j=@"+strings.Repeat("[", 900000))...),        // deep JSON
		append([]byte("!PLG: "), zlibOf("name=x;plugin=p;j=@["+strings.Repeat("1,", 200000)+"1]")...), // wide JSON
		[]byte("!HTB: name=../../etc;interval=10"),
		[]byte("!HTB: interval=10"),
		[]byte("!XYZ: name=a"),
		[]byte("!HTB: name=a;interval=nan;timestamp=inf;rtt=-1;ack_sent=1e308"),
	}
	for _, b := range hostile {
		paced(b)
	}
	// A flood of new names: at most max_hosts of them are admitted.
	for i := 0; i < 200; i++ {
		b, _ := hbcwire.Encode(htb(fmt.Sprintf("flood-%03d", i))(), hbcwire.EncodeOptions{})
		paced(b)
	}
	waitFor(t, "hostile input counted", func() bool {
		s := r.f.Stats()
		return s.Inflate >= 2 && s.TooManyFields >= 2 && s.Malformed >= 1000 && s.UnknownID >= 1 && s.HostsRefused >= 100
	})
	// The legitimate host still gets its ACKs, and its data.
	legit.exchange(htb("legit"), nil)
	legit.send(hbcwire.New(hbcwire.PLG).Add("name", "legit").Add("plugin", "cpu_monitor").Add("cpu_percent", 5.0), nil)
	waitFor(t, "legit plugin data", func() bool {
		h, _ := r.host("legit")
		return h.Plugins["cpu_monitor"]["cpu_percent"] == 5.0
	})
	if n := len(r.eng.Hosts()); n > 50 {
		t.Errorf("%d hosts tracked past max_hosts 50", n)
	}
	// An existing host keeps reporting past the limit.
	legit.exchange(htb("flood-000"), nil)
	if _, ok := r.host("flood-199"); ok {
		t.Errorf("host created past max_hosts")
	}
	if h, ok := r.host("a"); ok && (h.RTT != 0 || h.Interval != 20*time.Second) {
		t.Errorf("malformed values taken: %+v", h)
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if grew := int64(ms.HeapAlloc) - int64(heapBefore); grew > 64<<20 {
		t.Errorf("heap grew by %d MiB under hostile input", grew>>20)
	}
	t.Logf("stats: %+v", r.f.Stats())
}

func TestHBCPluginBounds(t *testing.T) {
	r := newRig(t, Settings{}, false)
	c := newClient(t, r.udp, nil)
	c.exchange(htb("big"), nil)
	before := r.f.Stats()
	for i := 0; i < MaxPlugins+5; i++ {
		c.send(hbcwire.New(hbcwire.PLG).Add("name", "big").Add("plugin", fmt.Sprintf("p%02d", i)).Add("v", i), nil)
	}
	waitFor(t, "plugins past the bound refused", func() bool {
		s := r.f.Stats()
		return s.PLG-before.PLG+s.TooManyFields-before.TooManyFields >= MaxPlugins+5
	})
	if h, _ := r.host("big"); len(h.Plugins) > MaxPlugins {
		t.Errorf("%d plugins kept", len(h.Plugins))
	}
}

// TestHBCReloadRebinds: a new heartbeat_listen is bound on reload and the
// old socket let go; a port in use refuses the reload.
func TestHBCReloadRebinds(t *testing.T) {
	r := newRig(t, Settings{}, false)
	if runtime.GOOS == "linux" && !r.f.hbc.kernelTS {
		t.Error("no kernel receive timestamps on Linux")
	}
	old := r.udp
	s := *r.f.set.Load()
	s.HeartbeatListen = "127.0.0.1:" + strconv.Itoa(freePort(t))
	if err := r.f.Reload(s); err != nil {
		t.Fatal(err)
	}
	now := r.f.HeartbeatAddr().(*net.UDPAddr)
	if now.Port == old.Port {
		t.Fatal("not rebound")
	}
	newClient(t, now, nil).exchange(htb("moved"), nil)
	// The old port is free again.
	c, err := net.ListenUDP("udp", old)
	if err != nil {
		t.Fatalf("old port still held: %v", err)
	}
	// A port in use refuses the reload; the receiver stays.
	s.HeartbeatListen = c.LocalAddr().String()
	if err := r.f.Reload(s); err == nil {
		t.Fatal("reload onto a busy port accepted")
	}
	c.Close()
	newClient(t, now, nil).exchange(htb("moved"), nil)
}

func TestACKLimiter(t *testing.T) {
	l := ackLimiter{rate: 3}
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	t0 := time.Unix(1000, 0)
	for i := 0; i < 3; i++ {
		if !l.allow(a, t0) {
			t.Fatalf("answer %d refused", i)
		}
	}
	if l.allow(a, t0.Add(500*time.Millisecond)) {
		t.Error("a fourth answer in the same second")
	}
	if !l.allow(b, t0) {
		t.Error("another address refused")
	}
	if !l.allow(a, t0.Add(time.Second)) {
		t.Error("refused in the next second")
	}
}

// TestHBCReflection: a flood of heartbeats from one address (as forged
// ones would be) gets at most the per-address rate of answers, and is
// still ingested.
func TestHBCReflection(t *testing.T) {
	r := newRig(t, Settings{}, false, func(_ *Settings, _ *monitor.Settings, o *Options) { o.ACKRate = 5 })
	c := newClient(t, r.udp, nil)
	for i := 0; i < 200; i++ {
		c.send(htb("victim")(), nil)
	}
	waitFor(t, "answers held back", func() bool { return r.f.Stats().ACKsLimited > 0 })
	if s := r.f.Stats(); s.ACKs >= s.HTB {
		t.Errorf("every heartbeat answered: %+v", s)
	}
}

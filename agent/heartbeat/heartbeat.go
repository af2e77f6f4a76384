// Package heartbeat is mb-agent's heartbeat mode: a client of hbd's UDP
// heartbeat protocol (what hbd's hbc sends), speaking the datagrams of
// package internal/hbcwire.
//
// Every interval it sends an HTB to every address of every server (each
// server name is resolved to all its IPv4 and IPv6 addresses, or those of
// one family). The server answers each HTB with an ACK, from which the
// client measures the round-trip time it reports in the next HTB. Plugin
// data (package plugins) goes out as PLG datagrams, each plugin on its own
// interval; info plugins go out once at start and again whenever an ACK
// carries request_update=1.
//
// With Boot, the first HTB to each address carries boot=1 and a clean stop
// sends a last HTB with shutdown=1, so the server records the host as
// stopped rather than overdue.
//
// CMD (run a command) and UPD (update yourself) from the server are
// honoured only when allowed (AllowCommands, AllowUpdate), only when the
// datagram is signed with the shared hmac_key, fresh (timestamp within
// five minutes) and not seen before: anyone who can send UDP to the client
// could otherwise run commands on it. Every CMD and UPD is logged, obeyed
// or not.
package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mbvm/mb/agent/plugins"
	"github.com/mbvm/mb/internal/hbcwire"
)

// Options configures a client.
type Options struct {
	// Servers are host names or addresses, each optionally with :port
	// (default Config.Port).
	Servers []string
	// Config is hbc's config.
	Config Config
	// Name is the host name reported; default the machine's hostname.
	Name string
	// Boot sends boot=1 on the first HTB and shutdown=1 on a clean stop.
	Boot bool
	// Family restricts addresses to IPv4 (4) or IPv6 (6); 0 uses both.
	Family int
	// AllowCommands and AllowUpdate let signed CMD and UPD through.
	AllowCommands, AllowUpdate bool
	// Version is reported by os_info.
	Version string
	// Logger receives the log; default slog.Default().
	Logger *slog.Logger
	// Plugins run on their schedules; nil builds them from
	// Config.Plugins.
	Plugins []plugins.Scheduled
}

// maxSkew is how far a CMD's or UPD's timestamp may be from now.
const maxSkew = 5 * time.Minute

// Client is one running heartbeat client.
type Client struct {
	o   Options
	log *slog.Logger
	key []byte

	mu     sync.Mutex
	enc    hbcwire.Encoder
	peers  []*peer
	seen   map[string]time.Time // CMD/UPD ids obeyed, for replays
	update chan struct{}
	acked  chan struct{}
	// lastTS is the last HTB timestamp sent.
	lastTS float64
	// v6fails counts failed opens per server for IPv6 addresses.
	v6fails map[string]int
	wg      sync.WaitGroup
}

// peer is one server address.
type peer struct {
	server string
	addr   netip.AddrPort
	conn   *net.UDPConn

	seq      int64
	sentAt   time.Time
	rtt      float64 // seconds, -1 before the first ACK
	acks     int64
	ackSent  string
	ackRecv  time.Time
	greeted  bool // the boot HTB went out
	reported bool // a send error was logged
}

// New checks the options and builds the plugins.
func New(o Options) (*Client, error) {
	if len(o.Servers) == 0 {
		return nil, errors.New("no server given: name at least one, such as monitor.example.com or 10.0.2.2:50003")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Config.Port == 0 {
		o.Config.Port = DefaultPort
	}
	if o.Config.Interval <= 0 {
		o.Config.Interval = DefaultInterval
	}
	if o.Family != 0 && o.Family != 4 && o.Family != 6 {
		return nil, fmt.Errorf("address family %d: use 4 or 6", o.Family)
	}
	for _, s := range o.Servers {
		if _, _, err := splitServer(s, o.Config.Port); err != nil {
			return nil, err
		}
	}
	if o.Name == "" {
		o.Name = hostname()
	}
	if (o.AllowCommands || o.AllowUpdate) && o.Config.Key == "" {
		return nil, errors.New("--allow-commands and --allow-update need a shared hmac_key in the config (or $" + KeyEnv + "): only signed commands are obeyed, and without a key none can be")
	}
	if o.Plugins == nil {
		ps, err := plugins.Build(o.Config.Plugins, o.Version, o.Logger)
		if err != nil {
			return nil, err
		}
		o.Plugins = ps
	}
	c := &Client{
		o: o, log: o.Logger, seen: map[string]time.Time{}, v6fails: map[string]int{},
		update: make(chan struct{}, 1), acked: make(chan struct{}, 1),
	}
	if o.Config.Key != "" {
		c.key = []byte(o.Config.Key)
	}
	return c, nil
}

// splitServer reads host[:port]; a bare IPv6 address is a host.
func splitServer(s string, def int) (string, int, error) {
	if s == "" {
		return "", 0, errors.New("empty server name")
	}
	if ip, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return ip.String(), def, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if strings.Contains(s, ":") {
			return "", 0, fmt.Errorf("server %q: write HOST, HOST:PORT or [IPv6]:PORT", s)
		}
		return s, def, nil
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", 0, fmt.Errorf("server %q: port %q is not a number from 1 to 65535", s, port)
	}
	if host == "" {
		return "", 0, fmt.Errorf("server %q has no host", s)
	}
	return host, n, nil
}

// resolve opens a socket to every address of every server that has none
// yet. Servers whose names do not resolve are tried again at the next
// heartbeat.
func (c *Client) resolve(ctx context.Context) {
	for _, s := range c.o.Servers {
		c.mu.Lock()
		have := slices.ContainsFunc(c.peers, func(p *peer) bool { return p.server == s })
		c.mu.Unlock()
		if have {
			continue
		}
		host, port, _ := splitServer(s, c.o.Config.Port)
		network := "ip"
		if c.o.Family == 4 {
			network = "ip4"
		} else if c.o.Family == 6 {
			network = "ip6"
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		addrs, err := net.DefaultResolver.LookupNetIP(rctx, network, host)
		cancel()
		if err != nil || len(addrs) == 0 {
			c.log.Warn("server does not resolve yet; trying again at the next heartbeat", "server", s, "err", err)
			continue
		}
		for _, a := range addrs {
			a = a.Unmap()
			if a.Is6() && c.v6fails[s] >= 3 {
				continue
			}
			ap := netip.AddrPortFrom(a, uint16(port))
			conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
			if err != nil {
				if a.Is6() {
					c.v6fails[s]++
					if c.v6fails[s] >= 3 {
						c.log.Warn("IPv6 address dropped after 3 failures to open", "server", s, "addr", ap, "err", err)
					}
				} else {
					c.log.Warn("cannot open a socket to the server; trying again at the next heartbeat", "server", s, "addr", ap, "err", err)
				}
				continue
			}
			p := &peer{server: s, addr: ap, conn: conn, rtt: -1}
			c.mu.Lock()
			c.peers = append(c.peers, p)
			c.mu.Unlock()
			c.log.Info("sending heartbeats", "server", s, "addr", ap.String())
			c.wg.Add(1)
			go c.read(p)
		}
	}
}

// Run sends heartbeats and plugin data until ctx ends, then (with Boot)
// the shutdown heartbeat, and returns nil.
func (c *Client) Run(ctx context.Context) error {
	c.log.Info("heartbeat client starting", "name", c.o.Name, "servers", c.o.Servers,
		"interval", c.o.Config.Interval, "plugins", len(c.o.Plugins), "signed", c.key != nil,
		"commands", onOff(c.o.AllowCommands), "updates", onOff(c.o.AllowUpdate))
	if !c.o.AllowCommands {
		c.log.Info("CMD from the server will be ignored: start with --allow-commands (and a shared hmac_key) to obey signed commands")
	}
	defer c.close()
	c.resolve(ctx)
	c.heartbeat(map[string]any{})
	pctx, stopPlugins := context.WithCancel(ctx)
	plugDone := make(chan struct{})
	go func() { defer close(plugDone); c.runPlugins(pctx) }()
	tick := time.NewTicker(c.o.Config.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			stopPlugins()
			<-plugDone
			if c.o.Boot {
				c.heartbeat(map[string]any{"shutdown": true})
				c.log.Info("sent the shutdown heartbeat")
			}
			c.log.Info("heartbeat client stopped")
			return nil
		case <-tick.C:
			c.resolve(ctx)
			c.heartbeat(map[string]any{})
		}
	}
}

func onOff(b bool) string {
	if b {
		return "on (signed only)"
	}
	return "off"
}

// close closes every socket and waits for the readers.
func (c *Client) close() {
	c.mu.Lock()
	for _, p := range c.peers {
		p.conn.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
}

// heartbeat sends one HTB to every peer, with extra fields.
func (c *Client) heartbeat(extra map[string]any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for _, p := range c.peers {
		p.seq++
		m := hbcwire.New(hbcwire.HTB).
			Add("name", c.o.Name).
			Add("timestamp", c.nextTimestamp(now)).
			Add("interval", int64(math.Ceil(c.o.Config.Interval.Seconds()))).
			Add("seq", p.seq).
			Add("acks", p.acks)
		if p.rtt >= 0 {
			m.Add("rtt", p.rtt)
		}
		if p.ackSent != "" {
			m.Add("ack_sent", p.ackSent).Add("ack_held", now.Sub(p.ackRecv).Seconds())
		}
		if c.o.Config.Owner != "" {
			m.Add("owner", c.o.Config.Owner)
		}
		if c.o.Boot && !p.greeted {
			m.Add("boot", true)
		}
		p.greeted = true
		for _, k := range sortedKeys(extra) {
			m.Add(k, extra[k])
		}
		p.sentAt = now
		c.sendLocked(p, m)
	}
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// nextTimestamp is an HTB's timestamp: now, but always at least one unit
// of the wire's 5 decimals after the previous one (c.mu held). A signed
// HTB whose timestamp is not above the last one is a replay to the
// receiver, and the HTBs to a server's several addresses, or sent in one
// go, would otherwise share one.
func (c *Client) nextTimestamp(now time.Time) float64 {
	ts := math.Round(unixSeconds(now)*1e5) / 1e5
	if ts <= c.lastTS {
		ts = c.lastTS + 1e-5
	}
	c.lastTS = ts
	return ts
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// sendLocked encodes m and sends it to p; c.mu is held.
func (c *Client) sendLocked(p *peer, m *hbcwire.Message) {
	b, err := c.enc.Encode(m, hbcwire.EncodeOptions{Key: c.key})
	if err != nil {
		c.log.Error("cannot encode a datagram", "id", m.ID, "err", err)
		return
	}
	if _, err := p.conn.Write(b); err != nil {
		if !p.reported {
			c.log.Warn("sending to the server failed; will keep trying", "server", p.server, "addr", p.addr.String(), "err", err)
			p.reported = true
		}
		return
	}
	if p.reported {
		c.log.Info("sending to the server works again", "server", p.server, "addr", p.addr.String())
		p.reported = false
	}
}

// broadcast sends m to every peer.
func (c *Client) broadcast(m *hbcwire.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.peers {
		c.sendLocked(p, m)
	}
}

// read handles what one server sends back, until its socket is closed.
func (c *Client) read(p *peer) {
	defer c.wg.Done()
	buf := make([]byte, hbcwire.MaxDatagram+1)
	var dec hbcwire.Decoder
	for {
		n, err := p.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// ICMP port unreachable shows up here as ECONNREFUSED: the
			// server is down; the next heartbeat tries again.
			c.log.Debug("reading from the server", "addr", p.addr.String(), "err", err)
			continue
		}
		m, err := dec.Decode(buf[:n])
		if err != nil {
			c.log.Debug("undecodable datagram from the server, dropped", "addr", p.addr.String(), "err", err)
			continue
		}
		switch m.ID {
		case hbcwire.ACK:
			c.ack(p, m)
		case hbcwire.CMD, hbcwire.UPD:
			c.order(p, m)
		default:
			c.log.Debug("unexpected message from the server, dropped", "id", m.ID)
		}
	}
}

// ack takes the RTT and the server's requests from an ACK.
func (c *Client) ack(p *peer, m *hbcwire.Message) {
	now := time.Now()
	c.mu.Lock()
	p.acks++
	if seq, err := m.Int("seq"); err == nil && seq == p.seq && !p.sentAt.IsZero() {
		p.rtt = now.Sub(p.sentAt).Seconds()
	} else if ts, err := m.Float("timestamp"); err == nil {
		if d := unixSeconds(now) - ts; d >= 0 && d < 60 {
			p.rtt = d
		}
	}
	if s, ok := m.Get("sent"); ok {
		p.ackSent, p.ackRecv = s, now
	}
	c.mu.Unlock()
	select {
	case c.acked <- struct{}{}:
	default:
	}
	if m.Bool("request_update") {
		select {
		case c.update <- struct{}{}:
		default:
		}
	}
}

// runPlugins collects every plugin on its schedule and sends its data.
func (c *Client) runPlugins(ctx context.Context) {
	next := make([]time.Time, len(c.o.Plugins))
	now := time.Now()
	for i := range next {
		next[i] = now
	}
	for {
		now = time.Now()
		wake := now.Add(time.Hour)
		for i, p := range c.o.Plugins {
			if next[i].IsZero() {
				continue // an info plugin already sent
			}
			if !now.Before(next[i]) {
				c.collect(ctx, p)
				if p.Info() {
					next[i] = time.Time{}
					continue
				}
				next[i] = next[i].Add(p.Interval)
				if next[i].Before(now) { // fell behind: do not catch up
					next[i] = now.Add(p.Interval)
				}
			}
			if next[i].Before(wake) {
				wake = next[i]
			}
		}
		t := time.NewTimer(time.Until(wake))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-c.update:
			t.Stop()
			c.log.Debug("the server asked for an update: resending the info plugins")
			for _, p := range c.o.Plugins {
				if p.Info() {
					c.collect(ctx, p)
				}
			}
		case <-t.C:
		}
	}
}

// collect runs one plugin and sends a PLG.
func (c *Client) collect(ctx context.Context, p plugins.Scheduled) {
	timeout := p.Interval
	if timeout <= 0 || timeout > time.Minute {
		timeout = time.Minute
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	fields, err := p.Collect(cctx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	m := hbcwire.New(hbcwire.PLG).Add("name", c.o.Name).Add("plugin", p.Name()).Add("timestamp", unixSeconds(time.Now()))
	if err != nil {
		c.log.Warn("plugin failed", "plugin", p.Name(), "err", err)
		m.Add("error", err.Error())
	}
	for _, k := range sortedKeys(fields) {
		if k == "name" || k == "plugin" || k == "timestamp" || k == "sig" {
			continue
		}
		m.Add(k, fields[k])
	}
	c.broadcast(m)
}

// SendMessage sends one HTB carrying text to every server and waits up to
// wait for an ACK; it returns an error when no server answered.
func (c *Client) SendMessage(ctx context.Context, text string, wait time.Duration) error {
	defer c.close()
	c.resolve(ctx)
	c.mu.Lock()
	n := len(c.peers)
	c.mu.Unlock()
	if n == 0 {
		return fmt.Errorf("no address of %s could be reached", strings.Join(c.o.Servers, ", "))
	}
	c.heartbeat(map[string]any{"message": text})
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-c.acked:
		return nil
	case <-t.C:
		return fmt.Errorf("the message was sent, but no server acknowledged it within %s: it may be lost", wait)
	case <-ctx.Done():
		return ctx.Err()
	}
}

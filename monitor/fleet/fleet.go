// Package fleet receives reports from machines mb does not run and pushes
// them into the monitor engine: VM tracker registrations (HTTP
// /api/register), hbd's hbc heartbeats (UDP, wire format in
// internal/hbcwire), and socktop agents (polled over WebSocket). Hosts
// with dyndns get their address published through nsupdate.
//
// Every receiver is bounded: hosts created by unauthenticated sources are
// capped (max_hosts), datagrams and bodies have size limits, and faults
// are counted (Stats) and dropped, never fatal.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mbvm/mb/monitor"
	"github.com/mbvm/mb/monitor/config"
)

// Sources, as they appear in a host's source.
const (
	SourceHBC     = "hbc"
	SourceTracker = "tracker"
	SourceSocktop = "socktop"
)

// DefaultMaxHosts bounds the hosts unauthenticated sources may create when
// max_hosts is not set.
const DefaultMaxHosts = 10000

// Settings are the fleet's configuration, taken from monitor.yaml.
type Settings struct {
	// HeartbeatListen is the UDP address of the hbc receiver ("": off).
	HeartbeatListen string
	// RegisterToken, when set, is required as a Bearer token by
	// /api/register, /api/vms and DELETE /api/vms/{hostname}.
	RegisterToken string
	// HMACKey signs ACK/CMD/UPD and checks heartbeats' sig; HMACRequired
	// refuses unsigned heartbeats.
	HMACKey      []byte
	HMACRequired bool
	// MaxHosts bounds the hosts unauthenticated sources create
	// (0: DefaultMaxHosts).
	MaxHosts int
	// Interval and Grace are the global expected interval and slack.
	Interval, Grace time.Duration
	// Hosts are the per-host settings the fleet uses.
	Hosts map[string]HostSettings
	// DNS is the dynamic DNS configuration.
	DNS DNSSettings
}

// HostSettings are one host's fleet keys.
type HostSettings struct {
	// Interval is the configured interval (0: none): it wins over learned
	// and announced ones.
	Interval time.Duration
	// Socktop and Token: the socktop agent to poll.
	Socktop, Token string
	// DynDNS publishes the host's address.
	DynDNS bool
}

// FromConfig takes the fleet's settings from a parsed monitor.yaml.
func FromConfig(c *config.Config) Settings {
	s := Settings{
		HeartbeatListen: c.HeartbeatListen,
		RegisterToken:   c.RegisterToken,
		HMACRequired:    c.HMACRequired,
		MaxHosts:        c.MaxHosts,
		Interval:        c.Interval,
		Grace:           c.Grace,
		Hosts:           map[string]HostSettings{},
		DNS: DNSSettings{
			Domains: c.DynDomains, Nsupdate: c.NsupdateBin, KeyFile: c.NsupdateKey,
			Server: c.NsupdateServer, TTL: c.DynDNSTTL,
		},
	}
	if c.HMACKey != "" {
		s.HMACKey = []byte(c.HMACKey)
	}
	for name, h := range c.Hosts {
		s.Hosts[name] = HostSettings{Interval: h.Interval, Socktop: h.Socktop, Token: h.Token, DynDNS: h.DynDNS}
	}
	return s
}

// Options configure a Fleet.
type Options struct {
	// Engine receives the observations (required).
	Engine *monitor.Engine
	// Logger (default slog.Default()) and Clock (default time.Now).
	Logger *slog.Logger
	Clock  func() time.Time
	// AgentDir holds the mb-agent binaries /download serves
	// (mb-agent-linux-amd64, mb-agent-linux-arm64, or mb-agent for the
	// host's own architecture); default: the directory of the running
	// executable.
	AgentDir string
	// HeartbeatReaders is how many goroutines read the UDP socket
	// (default: 2).
	HeartbeatReaders int
	// ACKRate bounds the answers to one source address per second
	// (default DefaultACKRate).
	ACKRate int
	// HeartbeatConn, when set, is the socket to receive heartbeats on
	// instead of binding heartbeat_listen (benchmarks compare a bare
	// receive loop on the same socket). The fleet closes it.
	HeartbeatConn *net.UDPConn
}

// Fleet is the fleet receivers of one monitor. Its methods are safe for
// concurrent use.
type Fleet struct {
	eng   *monitor.Engine
	log   *slog.Logger
	clock func() time.Time
	opts  Options
	set   atomic.Pointer[Settings]
	stats counters

	mu    sync.Mutex
	hosts map[string]*fhost // hosts the fleet has ingested

	hbcMu   sync.Mutex
	hbc     *hbcReceiver
	running context.Context
	wg      sync.WaitGroup

	acks    ackLimiter
	dns     *dynDNS
	pollers *pollers
	agents  *agentFiles
}

// fhost is what the fleet keeps per host it ingested (under Fleet.mu).
type fhost struct {
	addr       string    // last source address (no port)
	hbc        bool      // sent an hbc heartbeat
	plugins    bool      // PLG data received since the monitor started
	signed     bool      // sent a valid signed heartbeat: must keep signing
	lastSigned float64   // timestamp of the last signed heartbeat (replays)
	rtt        float64   // last server-measured RTT, seconds
	regLast    time.Time // last registration
	regGaps    [3]time.Duration
	regN       int
	iface      string // the tracker's interface
	queue      []queued
	// pluginSizes are the sizes of the plugins' latest payloads and
	// pluginBytes their sum (bounded by MaxPluginBytes).
	pluginSizes map[string]int
	pluginBytes int
}

// New makes the fleet receivers and binds the heartbeat socket when
// heartbeat_listen is set. Nothing runs until Run.
func New(s Settings, opts Options) (*Fleet, error) {
	if opts.Engine == nil {
		return nil, errors.New("fleet: no engine")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.HeartbeatReaders <= 0 {
		opts.HeartbeatReaders = 2
	}
	if opts.AgentDir == "" {
		if exe, err := os.Executable(); err == nil {
			opts.AgentDir = filepath.Dir(exe)
		}
	}
	f := &Fleet{
		eng: opts.Engine, log: opts.Logger.With("component", "fleet"), clock: opts.Clock, opts: opts,
		hosts: map[string]*fhost{},
	}
	if opts.ACKRate <= 0 {
		opts.ACKRate = DefaultACKRate
	}
	f.acks.rate = opts.ACKRate
	f.set.Store(&s)
	f.dns = newDynDNS(f)
	f.pollers = newPollers(f)
	f.agents = &agentFiles{dir: opts.AgentDir}
	if opts.HeartbeatConn != nil {
		f.hbc = f.receiveOn(opts.HeartbeatConn)
	} else if s.HeartbeatListen != "" {
		r, err := f.listenHBC(s.HeartbeatListen)
		if err != nil {
			return nil, err
		}
		f.hbc = r
	}
	return f, nil
}

// Run runs the receivers until ctx ends: the heartbeat readers, the
// socktop pollers and the DNS worker.
func (f *Fleet) Run(ctx context.Context) {
	f.hbcMu.Lock()
	f.running = ctx
	if f.hbc != nil {
		f.hbc.start(ctx, &f.wg)
	}
	f.hbcMu.Unlock()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		f.dns.run(ctx)
	}()
	f.pollers.update(ctx, f.set.Load())
	<-ctx.Done()
	f.hbcMu.Lock()
	f.running = nil
	if f.hbc != nil {
		f.hbc.close()
	}
	f.hbcMu.Unlock()
	f.pollers.stopAll()
	f.wg.Wait()
}

// Reload puts new settings in force. A new heartbeat address is bound
// first: when that fails the old settings stay.
func (f *Fleet) Reload(s Settings) error {
	old := f.set.Load()
	f.hbcMu.Lock()
	defer f.hbcMu.Unlock()
	if s.HeartbeatListen != old.HeartbeatListen {
		var nr *hbcReceiver
		if s.HeartbeatListen != "" {
			var err error
			if nr, err = f.listenHBC(s.HeartbeatListen); err != nil {
				return err
			}
		}
		if f.hbc != nil {
			f.hbc.close()
		}
		f.hbc = nr
		if nr != nil && f.running != nil {
			nr.start(f.running, &f.wg)
		}
	}
	f.set.Store(&s)
	if f.running != nil {
		f.pollers.update(f.running, &s)
	}
	return nil
}

// Close releases the heartbeat socket (Run closes it too).
func (f *Fleet) Close() error {
	f.hbcMu.Lock()
	defer f.hbcMu.Unlock()
	if f.hbc != nil {
		f.hbc.close()
	}
	return nil
}

// HeartbeatAddr is the UDP receiver's address, nil when off.
func (f *Fleet) HeartbeatAddr() net.Addr {
	f.hbcMu.Lock()
	defer f.hbcMu.Unlock()
	if f.hbc == nil {
		return nil
	}
	return f.hbc.conn.LocalAddr()
}

var errTooManyHosts = errors.New("too many hosts from unauthenticated sources: max_hosts reached (raise max_hosts in monitor.yaml)")

// admit returns the fleet's record of a host, creating it when the host
// limit allows (f.mu held).
func (f *Fleet) admit(name string, authenticated bool) (*fhost, error) {
	if h := f.hosts[name]; h != nil {
		return h, nil
	}
	limit := f.set.Load().MaxHosts
	if limit <= 0 {
		limit = DefaultMaxHosts
	}
	if !authenticated && len(f.hosts) >= limit {
		f.stats.hostsRefused.Add(1)
		return nil, errTooManyHosts
	}
	h := &fhost{}
	f.hosts[name] = h
	return h, nil
}

// observe pushes one observation into the engine, and queues a DNS update
// when the host's address changed.
func (f *Fleet) observe(ctx context.Context, o monitor.Observation) error {
	if err := f.eng.Observe(ctx, o); err != nil {
		f.stats.engineErrors.Add(1)
		return err
	}
	return nil
}

// noteAddress records a host's address (f.mu held); it reports whether it
// changed.
func (h *fhost) noteAddress(addr string) bool {
	if addr == "" || addr == h.addr {
		return false
	}
	h.addr = addr
	return true
}

// addressChanged queues a DNS update for a host with dyndns.
func (f *Fleet) addressChanged(name, addr string) {
	if hs, ok := f.set.Load().Hosts[name]; ok && hs.DynDNS {
		f.dns.enqueue(name, addr)
	}
}

// forget drops the fleet's record of a host.
func (f *Fleet) forget(name string) {
	f.mu.Lock()
	delete(f.hosts, name)
	f.mu.Unlock()
}

// validName accepts host names as DNS and dashboards can carry them:
// 1 to 253 letters, digits, '.', '-' and '_', not starting with '.' or '-'.
func validName(s string) bool {
	if s == "" || len(s) > 253 || s[0] == '.' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func nameError(s string) error {
	return fmt.Errorf("host name %q: use 1 to 253 letters, digits, '.', '-' or '_'", s)
}

// ipOf is the address without a port.
func ipOf(ap netip.AddrPort) string { return ap.Addr().Unmap().String() }

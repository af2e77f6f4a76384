package qga

import (
	"context"
	"encoding/json"
	"github.com/mbvm/mb/agent/qgaproto"
	"github.com/mbvm/mb/internal/safetext"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"
)

// Agent states, in AgentInfo.State.
const (
	StateOK           = "ok"
	StateUnresponsive = "unresponsive"
	StateNone         = "none"
)

// AgentInfo is what a Watcher knows of its agent. Its fields are those of
// vmhost.AgentInfo, so a backend converts one into the other.
type AgentInfo struct {
	// State is StateOK, StateUnresponsive or StateNone.
	State    string
	LastSeen *time.Time
	// RTTMs is the last ping round trip; RTTAvgMs a smoothed average.
	RTTMs    float64
	RTTAvgMs float64
	Hostname string
	OS       string
	IPs      []string
	// Kind is "mb-agent" or "qemu-ga" when known.
	Kind string
	// Ready lists the readiness names guest programs reported (mb.ready;
	// "default" for an unnamed one).
	Ready []string
	// MessagesSeq numbers the last message collected from guest programs
	// (see Watcher.Messages); MessagesDropped counts those lost: dropped
	// by the guest's full queue or over the host's rate limit.
	MessagesSeq     uint64
	MessagesDropped uint64
}

// Defaults of WatcherOptions.
const (
	DefaultInterval = 5 * time.Second
	// DefaultRefresh is how often hostname, OS and addresses are fetched
	// again once known.
	DefaultRefresh = 30 * time.Second
	// searchInterval is how often the Watcher pings while the agent has
	// never answered (booting, or no agent), so readiness shows at once.
	searchInterval = 100 * time.Millisecond
)

// WatcherOptions configures a Watcher. The zero value is usable.
type WatcherOptions struct {
	// Interval between pings (DefaultInterval when 0).
	Interval time.Duration
	// Grace is how much longer than Interval an agent may stay silent
	// before it shows as unresponsive; at least two intervals.
	Grace time.Duration
	// Refresh is how often facts (hostname, OS, IPs) are fetched again.
	Refresh time.Duration
	// Logger receives state changes (slog.Default() when nil).
	Logger *slog.Logger
}

// Watcher keeps track of a guest agent's liveness: it pings it every
// interval, records when it last answered and the round-trip time, and
// caches the guest's hostname, OS and IP addresses. Info never blocks, so
// vmhost can answer status with it while the agent hangs. Exec, Metrics and
// Shutdown go through the same serialised channel.
type Watcher struct {
	c    *Client
	opts WatcherOptions
	log  *slog.Logger

	mu       sync.Mutex
	rtt      time.Duration
	srtt     time.Duration
	hostname string
	os       string
	ips      []string
	kind     string
	factsAt  time.Time
	state    string // last state logged

	// Messages from guest programs (messages.go).
	msgSupported  bool
	guestInstance string
	guestAfter    uint64
	guestDropped  uint64
	limited       uint64
	bucket        tokenBucket
	hostSeq       uint64
	inbox         []GuestMessage
	ready         []string
	fastUntil     time.Time
	poke          chan struct{}
}

// NewWatcher returns a Watcher over c. Call Run to start pinging.
func NewWatcher(c *Client, opts WatcherOptions) *Watcher {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Grace < 2*opts.Interval {
		opts.Grace = 2 * opts.Interval
	}
	if opts.Refresh <= 0 {
		opts.Refresh = DefaultRefresh
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Watcher{c: c, opts: opts, log: log, state: StateNone, poke: make(chan struct{}, 1)}
}

// Close closes the Watcher's client, interrupting a call in progress. Run
// keeps running until its context ends, with every ping failing.
func (w *Watcher) Close() error { return w.c.Close() }

// Client returns the client the Watcher uses.
func (w *Watcher) Client() *Client { return w.c }

// Run pings the agent until ctx is done. A ping waits for its turn on the
// channel (behind a long exec, say) without counting as missed.
func (w *Watcher) Run(ctx context.Context) {
	for {
		w.pingOnce(ctx)
		w.logStateChange()
		next := w.opts.Interval
		w.mu.Lock()
		if time.Now().Before(w.fastUntil) {
			next = min(next, fastInterval)
		}
		w.mu.Unlock()
		if w.c.Stats().LastOK.IsZero() {
			next = searchInterval
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-w.poke:
			t.Stop()
		}
	}
}

func (w *Watcher) pingOnce(ctx context.Context) {
	rtt, err := w.c.Ping(ctx)
	if err != nil {
		w.log.Debug("guest agent ping failed", "error", err)
		return
	}
	w.mu.Lock()
	w.rtt = rtt
	if w.srtt == 0 {
		w.srtt = rtt
	} else {
		w.srtt += (rtt - w.srtt) / 8
	}
	due := w.factsAt.IsZero() || time.Since(w.factsAt) >= w.opts.Refresh ||
		(len(w.ips) == 0 && time.Since(w.factsAt) >= w.opts.Interval)
	w.mu.Unlock()
	if due {
		w.refreshFacts(ctx)
	}
	w.mu.Lock()
	collect := w.msgSupported
	w.mu.Unlock()
	if collect {
		w.collectMessages(ctx)
	}
}

// maxFactLen caps the hostname and OS name kept from the guest.
const maxFactLen = 256

// refreshFacts fetches hostname, OS, addresses and the agent's kind. A
// failure keeps the old values.
func (w *Watcher) refreshFacts(ctx context.Context) {
	info, err := w.c.Info(ctx)
	if err != nil {
		return
	}
	kind := "qemu-ga"
	if info.IsMBAgent() {
		kind = "mb-agent"
	}
	host, herr := w.c.HostName(ctx)
	osi, oerr := w.c.OSInfo(ctx)
	ifaces, ierr := w.c.Interfaces(ctx)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.kind = kind
	w.msgSupported = info.Supports(qgaproto.MessagesCommand)
	w.factsAt = time.Now()
	// What the guest says is untrusted: it reaches terminals (mb info) and
	// pages, so control characters and bidi overrides go here.
	if herr == nil {
		w.hostname = safetext.Clean(host, maxFactLen)
	}
	if oerr == nil {
		w.os = safetext.Clean(osName(osi), maxFactLen)
	}
	if ierr == nil {
		w.ips = guestIPs(ifaces)
	}
}

func osName(o *qgaproto.OSInfo) string {
	switch {
	case o.PrettyName != "":
		return o.PrettyName
	case o.Name != "":
		return strings.TrimSpace(o.Name + " " + o.Version)
	case o.KernelRelease != "":
		return "Linux " + o.KernelRelease
	}
	return ""
}

// guestIPs lists the addresses worth showing: no loopback, no link-local.
func guestIPs(ifaces []qgaproto.Interface) []string {
	var out []string
	for _, i := range ifaces {
		for _, a := range i.IPAddresses {
			ip := net.ParseIP(a.Address)
			if ip == nil || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() {
				continue
			}
			out = append(out, ip.String())
		}
	}
	return out
}

// State is the agent's liveness now: ok, unresponsive or none. An agent
// that has never answered is none, unless something other than an answer
// came over the channel (garbage), which makes it unresponsive. An agent
// that answered is unresponsive once it has been silent for more than
// interval+grace, except while a call is still in progress with no failure
// since the last answer (a long exec is not silence).
func (w *Watcher) State() string {
	st := w.c.Stats()
	if st.LastOK.IsZero() {
		if st.Received {
			return StateUnresponsive
		}
		return StateNone
	}
	stale := time.Since(st.LastOK) > w.opts.Interval+w.opts.Grace
	if stale && (!st.Busy || st.LastFail.After(st.LastOK)) {
		return StateUnresponsive
	}
	return StateOK
}

func (w *Watcher) logStateChange() {
	s := w.State()
	w.mu.Lock()
	old := w.state
	w.state = s
	w.mu.Unlock()
	if s != old {
		w.log.Info("guest agent state changed", "from", old, "to", s)
	}
}

// Responsive reports whether the agent is answering (state ok).
func (w *Watcher) Responsive() bool {
	return w.State() == StateOK
}

// Info returns what is known of the agent. It never blocks on the agent.
func (w *Watcher) Info() *AgentInfo {
	state := w.State()
	st := w.c.Stats()
	w.mu.Lock()
	defer w.mu.Unlock()
	info := &AgentInfo{
		State:    state,
		RTTMs:    float64(w.rtt.Microseconds()) / 1000,
		RTTAvgMs: float64(w.srtt.Microseconds()) / 1000,
		Hostname: w.hostname,
		OS:       w.os,
		IPs:      append([]string(nil), w.ips...),
		Kind:     w.kind,
		Ready:    slices.Clone(w.ready),

		MessagesSeq:     w.hostSeq,
		MessagesDropped: w.guestDropped + w.limited,
	}
	if !st.LastOK.IsZero() {
		t := st.LastOK.UTC()
		info.LastSeen = &t
	}
	return info
}

// Exec runs a command in the guest (see Client.Exec).
func (w *Watcher) Exec(ctx context.Context, req ExecRequest) (*ExecResult, error) {
	return w.c.Exec(ctx, req)
}

// Metrics returns the guest's metrics document (see Client.Metrics).
func (w *Watcher) Metrics(ctx context.Context) (json.RawMessage, error) {
	return w.c.Metrics(ctx)
}

// Shutdown asks the guest to power off (see Client.Shutdown).
func (w *Watcher) Shutdown(ctx context.Context) error {
	return w.c.Shutdown(ctx, "powerdown")
}

// ExecStream runs a command with its output streamed (see
// Client.ExecStream).
func (w *Watcher) ExecStream(ctx context.Context, req StreamRequest, in <-chan StreamInput, h StreamHandlers) (int, error) {
	return w.c.ExecStream(ctx, req, in, h)
}

package service

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/mbvm/mb/monitor"
	"github.com/mbvm/mb/monitor/web"
)

// Live feed limits.
const (
	// FeedPeriod is how often changes are sent to the pages.
	FeedPeriod = 200 * time.Millisecond
	// feedQueue is how many frames may wait for a slow client before it
	// is dropped (its page reconnects and starts again from a snapshot).
	feedQueue = 32
	// maxFeedClients bounds the WebSocket clients at once.
	maxFeedClients = 512
)

// HostRow is a host as the live feed sends it: short keys, because a
// busy fleet sends many.
type HostRow struct {
	Name     string  `json:"n"`
	Reach    string  `json:"r"`
	Why      string  `json:"why,omitempty"`
	Source   string  `json:"src,omitempty"`
	Address  string  `json:"addr,omitempty"`
	RTT      float64 `json:"rtt,omitempty"` // ms
	LastSeen int64   `json:"ls,omitempty"`  // Unix ms
	Worst    string  `json:"w"`
	Alerts   int     `json:"a,omitempty"`
	Gone     bool    `json:"gone,omitempty"`
}

// MessageRow is a message-stream line as the live feed sends it.
type MessageRow struct {
	Time int64  `json:"t"` // Unix ms
	Kind string `json:"k"`
	Host string `json:"h,omitempty"`
	Text string `json:"x,omitempty"`
}

// Frame is one WebSocket message of the live feed: the hosts that changed
// since the last frame and the new messages.
type Frame struct {
	Hosts    []HostRow    `json:"hosts,omitempty"`
	Messages []MessageRow `json:"msgs,omitempty"`
}

func hostRow(h monitor.HostInfo) HostRow {
	lh := liveHost(h)
	return HostRow{
		Name: h.Name, Reach: lh.Reach, Why: lh.ReachReason, Source: lh.Source, Address: lh.Address,
		RTT: float64(lh.RTT) / float64(time.Millisecond), LastSeen: unixMilli(lh.LastSeen),
		Worst: lh.Worst, Alerts: lh.Alerts,
	}
}

func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// hub fans the monitor's changes out to the pages' WebSockets. Journal
// messages mark their host dirty; every FeedPeriod the dirty hosts are
// compared with what was last sent and only the changed ones go out, each
// client getting the hosts it may see.
type hub struct {
	s *Service

	mu      sync.Mutex
	clients map[*feedClient]struct{}
	dirty   map[string]bool
	msgs    []web.Message
	last    map[string]HostRow
}

type feedClient struct {
	ctx  context.Context // carries the user's principal
	send chan []byte
	gone chan struct{}
	once sync.Once
}

func (c *feedClient) drop() { c.once.Do(func() { close(c.gone) }) }

func newHub(s *Service) *hub {
	return &hub{s: s, clients: map[*feedClient]struct{}{}, dirty: map[string]bool{}, last: map[string]HostRow{}}
}

// note takes a journal message.
func (h *hub) note(m web.Message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.clients) == 0 {
		return
	}
	if m.Host != "" {
		h.dirty[m.Host] = true
	}
	if len(h.msgs) < 1000 {
		h.msgs = append(h.msgs, m)
	}
}

// run sends changes every FeedPeriod until ctx ends, and sweeps every
// host now and then for changes no message announced (a host going
// overdue is journaled, but a removed one may not be).
func (h *hub) run(ctx context.Context) {
	t := time.NewTicker(FeedPeriod)
	defer t.Stop()
	sweep := time.NewTicker(5 * time.Second)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			h.mu.Lock()
			for c := range h.clients {
				c.drop()
			}
			h.mu.Unlock()
			return
		case <-sweep.C:
			h.flush(true)
		case <-t.C:
			h.flush(false)
		}
	}
}

type changed struct {
	info monitor.HostInfo
	row  HostRow
}

func (h *hub) flush(all bool) {
	// The engine is never called with h.mu held: the engine journals
	// (and so calls note) under its own lock.
	var every []monitor.HostInfo
	if all && h.clientCount() > 0 {
		every = h.s.engine.Hosts()
	}
	h.mu.Lock()
	if len(h.clients) == 0 {
		clear(h.dirty)
		clear(h.last)
		h.msgs = nil
		h.mu.Unlock()
		return
	}
	var names []string
	if all {
		for _, hi := range every {
			h.dirty[hi.Name] = true
		}
		for n := range h.last {
			h.dirty[n] = true
		}
	}
	for n := range h.dirty {
		names = append(names, n)
	}
	clear(h.dirty)
	msgs := h.msgs
	h.msgs = nil
	clients := make([]*feedClient, 0, len(h.clients))
	for c := range h.clients {
		clients = append(clients, c)
	}
	h.mu.Unlock()

	var ch []changed
	for _, n := range names {
		info, ok := h.s.engine.Host(n)
		var row HostRow
		if ok {
			row = hostRow(info)
		} else {
			row = HostRow{Name: n, Gone: true}
			info.Name = n
		}
		h.mu.Lock()
		prev, had := h.last[n]
		if ok {
			h.last[n] = row
		} else {
			delete(h.last, n)
		}
		h.mu.Unlock()
		if (had && prev == row) || (!had && !ok) {
			continue
		}
		ch = append(ch, changed{info, row})
	}
	if len(ch) == 0 && len(msgs) == 0 {
		return
	}
	// Visibility is decided per host once per user.
	for _, c := range clients {
		var f Frame
		seen := map[string]bool{}
		for _, x := range ch {
			if x.row.Gone || h.s.visible(c.ctx, x.info) {
				f.Hosts = append(f.Hosts, x.row)
				seen[x.row.Name] = true
			}
		}
		for _, m := range msgs {
			if m.Host == "" {
				if restricted(c.ctx) {
					continue
				}
			} else if !seen[m.Host] {
				info, ok := h.s.engine.Host(m.Host)
				if !ok || !h.s.visible(c.ctx, info) {
					continue
				}
				seen[m.Host] = true
			}
			f.Messages = append(f.Messages, MessageRow{Time: m.Time.UnixMilli(), Kind: m.Kind, Host: m.Host, Text: m.Text})
		}
		if len(f.Hosts) == 0 && len(f.Messages) == 0 {
			continue
		}
		b, _ := json.Marshal(f)
		select {
		case c.send <- b:
		default:
			c.drop() // too slow: its page reconnects
		}
	}
}

// snapshot is the first frame of a new client: every host it may see.
func (h *hub) snapshot(ctx context.Context) []byte {
	var f Frame
	for _, info := range h.s.engine.Hosts() {
		if h.s.visible(ctx, info) {
			f.Hosts = append(f.Hosts, hostRow(info))
		}
	}
	b, _ := json.Marshal(f)
	return b
}

func (h *hub) add(c *feedClient) bool {
	var rows []HostRow
	if h.clientCount() == 0 {
		for _, info := range h.s.engine.Hosts() {
			rows = append(rows, hostRow(info))
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.clients) >= maxFeedClients {
		return false
	}
	if len(h.clients) == 0 {
		// Start from what the engine has now: a host goes out again
		// only when it changes.
		for _, r := range rows {
			h.last[r.Name] = r
		}
	}
	h.clients[c] = struct{}{}
	return true
}

func (h *hub) clientCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.clients)
}

func (h *hub) remove(c *feedClient) {
	h.mu.Lock()
	delete(h.clients, c)
	h.mu.Unlock()
}

// FeedClients is the number of open live-feed WebSockets.
func (s *Service) FeedClients() int { return s.site.hub.clientCount() }

// serveWS serves the live feed. The gate has checked the session; the
// WebSocket library refuses an Origin other than the page's own host.
func (s *Service) serveWS(w http.ResponseWriter, r *http.Request) {
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept has answered (403 for a foreign Origin)
	}
	defer conn.CloseNow()
	ctx := r.Context()
	c := &feedClient{ctx: ctx, send: make(chan []byte, feedQueue), gone: make(chan struct{})}
	if !s.site.hub.add(c) {
		conn.Close(websocket.StatusTryAgainLater, "too many live clients")
		return
	}
	defer s.site.hub.remove(c)
	// The client sends nothing; reading notices its going away.
	ctx = conn.CloseRead(ctx)
	write := func(b []byte) error {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return conn.Write(wctx, websocket.MessageText, b)
	}
	if err := write(s.site.hub.snapshot(c.ctx)); err != nil {
		return
	}
	// A session that ends (logout, expiry, a changed password) closes
	// the feed.
	id, hasID := identOf(r.Context())
	check := time.NewTicker(30 * time.Second)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.gone:
			conn.Close(websocket.StatusTryAgainLater, "too slow")
			return
		case <-check.C:
			if hasID && id.token != "" {
				if _, ok := s.site.sessions.Lookup(id.token); !ok {
					conn.Close(websocket.StatusPolicyViolation, "session ended")
					return
				}
			}
		case b := <-c.send:
			if err := write(b); err != nil {
				return
			}
		}
	}
}

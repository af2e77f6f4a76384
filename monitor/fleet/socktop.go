package fleet

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/mbvm/mb/monitor"
)

// Limits of the socktop poller.
const (
	// socktopTimeout bounds connecting and each request.
	socktopTimeout = 10 * time.Second
	// maxSocktopReply bounds a reply, compressed or not.
	maxSocktopReply = 4 << 20
)

// pollers runs one poller per host with a socktop URL.
type pollers struct {
	f       *Fleet
	mu      sync.Mutex
	running map[string]*poller
}

type poller struct {
	host, url, token string
	interval         time.Duration
	cancel           context.CancelFunc
	done             chan struct{}
}

func newPollers(f *Fleet) *pollers { return &pollers{f: f, running: map[string]*poller{}} }

// update starts, restarts and stops pollers to match the settings.
func (ps *pollers) update(ctx context.Context, s *Settings) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for name, p := range ps.running {
		hs, ok := s.Hosts[name]
		if !ok || hs.Socktop != p.url || hs.Token != p.token || ps.intervalOf(s, name) != p.interval {
			p.stop()
			delete(ps.running, name)
		}
	}
	for name, hs := range s.Hosts {
		if hs.Socktop == "" || ps.running[name] != nil {
			continue
		}
		pctx, cancel := context.WithCancel(ctx)
		p := &poller{host: name, url: hs.Socktop, token: hs.Token, interval: ps.intervalOf(s, name), cancel: cancel, done: make(chan struct{})}
		ps.running[name] = p
		go func() {
			defer close(p.done)
			p.run(pctx, ps.f)
		}()
	}
}

func (ps *pollers) intervalOf(s *Settings, name string) time.Duration {
	if iv := s.Hosts[name].Interval; iv > 0 {
		return iv
	}
	if s.Interval > 0 {
		return s.Interval
	}
	return monitor.DefaultInterval
}

func (ps *pollers) stopAll() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for name, p := range ps.running {
		p.stop()
		delete(ps.running, name)
	}
}

func (p *poller) stop() {
	p.cancel()
	<-p.done
}

// run polls every interval over one connection, reconnecting after a
// failure. A host that cannot be polled is simply not observed, so it
// becomes overdue.
func (p *poller) run(ctx context.Context, f *Fleet) {
	var conn *websocket.Conn
	defer func() {
		if conn != nil {
			conn.CloseNow()
		}
	}()
	var mapper socktopMapper
	u, err := url.Parse(p.url)
	if err != nil {
		f.log.Error("fleet: socktop URL", "host", p.host, "err", err)
		return
	}
	addr := u.Hostname()
	if p.token != "" {
		q := u.Query()
		q.Set("token", p.token)
		u.RawQuery = q.Encode()
	}
	t := time.NewTimer(0)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if conn == nil {
			dctx, cancel := context.WithTimeout(ctx, socktopTimeout)
			conn, _, err = websocket.Dial(dctx, u.String(), nil)
			cancel()
			if err == nil {
				conn.SetReadLimit(maxSocktopReply)
			}
		}
		if err == nil {
			err = p.poll(ctx, f, conn, &mapper, addr)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			f.stats.pollErrors.Add(1)
			if failures == 0 {
				f.log.Warn("fleet: socktop agent unreachable", "host", p.host, "url", p.url, "err", err)
			}
			failures++
			if conn != nil {
				conn.CloseNow()
				conn = nil
			}
			mapper = socktopMapper{}
		} else {
			if failures > 0 {
				f.log.Info("fleet: socktop agent reachable again", "host", p.host)
			}
			failures = 0
		}
		t.Reset(p.interval)
	}
}

// socktopMetrics is the part of socktop's metrics reply the monitor reads.
type socktopMetrics struct {
	CPUTotal     *float64      `json:"cpu_total"`
	CPUPerCore   []float64     `json:"cpu_per_core"`
	MemTotal     uint64        `json:"mem_total"`
	MemUsed      uint64        `json:"mem_used"`
	SwapTotal    uint64        `json:"swap_total"`
	SwapUsed     uint64        `json:"swap_used"`
	CPUTempC     *float64      `json:"cpu_temp_c"`
	Disks        []socktopDisk `json:"disks"`
	Networks     []socktopNet  `json:"networks"`
	ProcessCount *int          `json:"process_count"`
}

type socktopDisk struct {
	Name      string `json:"name"`
	Total     uint64 `json:"total"`
	Available uint64 `json:"available"`
}

type socktopNet struct {
	Name        string `json:"name"`
	Received    uint64 `json:"received"`
	Transmitted uint64 `json:"transmitted"`
}

func (p *poller) poll(ctx context.Context, f *Fleet, c *websocket.Conn, mp *socktopMapper, addr string) error {
	f.stats.polls.Add(1)
	var m socktopMetrics
	if err := request(ctx, c, "get_metrics", &m); err != nil {
		return fmt.Errorf("get_metrics: %w", err)
	}
	var disks []socktopDisk
	if err := request(ctx, c, "get_disks", &disks); err != nil {
		return fmt.Errorf("get_disks: %w", err)
	}
	if len(disks) == 0 {
		disks = m.Disks
	}
	now := f.clock()
	obs := mp.next(m, disks, now)
	for _, pd := range obs {
		o := monitor.Observation{Host: p.host, Source: SourceSocktop, Plugin: pd.plugin, Fields: pd.fields, Address: addr}
		if err := f.observe(ctx, o); err != nil {
			return err
		}
	}
	if len(obs) == 0 {
		return f.observe(ctx, monitor.Observation{Host: p.host, Source: SourceSocktop, Address: addr})
	}
	return nil
}

// request sends one text request and decodes its reply: a text frame of
// JSON, or a binary frame of gzip-compressed JSON.
func request(ctx context.Context, c *websocket.Conn, req string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, socktopTimeout)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(req)); err != nil {
		return err
	}
	typ, data, err := c.Read(ctx)
	if err != nil {
		return err
	}
	if typ == websocket.MessageBinary {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("binary reply is not gzip: %w", err)
		}
		plain, err := io.ReadAll(io.LimitReader(zr, maxSocktopReply+1))
		if err != nil {
			return fmt.Errorf("binary reply: %w", err)
		}
		if len(plain) > maxSocktopReply {
			return errors.New("reply inflates past 4 MiB")
		}
		data = plain
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("reply is not the expected JSON: %w", err)
	}
	return nil
}

// socktopMapper maps successive socktop replies onto hbd's plugins, keeping
// the previous network counters for deltas and rates.
type socktopMapper struct {
	prevNet  map[string]socktopNet
	prevTime time.Time
}

type pluginFields struct {
	plugin string
	fields map[string]any
}

func (mp *socktopMapper) next(m socktopMetrics, disks []socktopDisk, now time.Time) []pluginFields {
	var out []pluginFields
	cpu := map[string]any{}
	if m.CPUTotal != nil && !math.IsNaN(*m.CPUTotal) {
		cpu["cpu_percent"] = round2(*m.CPUTotal)
	}
	if len(m.CPUPerCore) > 0 {
		cpu["cpu_core_count"] = len(m.CPUPerCore)
		per := make([]any, len(m.CPUPerCore))
		for i, c := range m.CPUPerCore {
			per[i] = round2(c)
		}
		cpu["per_core"] = per
	}
	if m.CPUTempC != nil {
		cpu["cpu_temp_c"] = round2(*m.CPUTempC)
	}
	if m.ProcessCount != nil {
		cpu["process_count"] = *m.ProcessCount
	}
	if len(cpu) > 0 {
		out = append(out, pluginFields{"cpu_monitor", cpu})
	}
	if m.MemTotal > 0 {
		used := min(m.MemUsed, m.MemTotal)
		swapUsed := min(m.SwapUsed, m.SwapTotal)
		pct := percent(used, m.MemTotal)
		out = append(out, pluginFields{"memory_monitor", map[string]any{
			"memory_total": m.MemTotal, "memory_used": used, "memory_available": m.MemTotal - used,
			"percent": pct, "memory_percent": pct,
			"swap_total": m.SwapTotal, "swap_used": swapUsed, "swap_free": m.SwapTotal - swapUsed,
			"swap_percent": percent(swapUsed, m.SwapTotal),
		}})
	}
	if len(disks) > 0 {
		parts := map[string]any{}
		for _, d := range disks {
			if d.Name == "" || d.Total == 0 {
				continue
			}
			free := min(d.Available, d.Total)
			used := d.Total - free
			parts[d.Name] = map[string]any{
				"total": d.Total, "used": used, "free": free, "percent": percent(used, d.Total),
				"free_gb": round2(float64(free) / (1 << 30)), "total_gb": round2(float64(d.Total) / (1 << 30)),
			}
		}
		if len(parts) > 0 {
			out = append(out, pluginFields{"disk_monitor", map[string]any{"partitions": parts}})
		}
	}
	if len(m.Networks) > 0 {
		secs := 0.0
		if !mp.prevTime.IsZero() {
			secs = now.Sub(mp.prevTime).Seconds()
		}
		ifaces := map[string]any{}
		var recv, sent uint64
		cur := map[string]socktopNet{}
		for _, n := range m.Networks {
			if n.Name == "" || n.Name == "lo" {
				continue
			}
			cur[n.Name] = n
			recv += n.Received
			sent += n.Transmitted
			fl := map[string]any{"bytes_recv": n.Received, "bytes_sent": n.Transmitted}
			if p, ok := mp.prevNet[n.Name]; ok && n.Received >= p.Received && n.Transmitted >= p.Transmitted {
				dr, ds := n.Received-p.Received, n.Transmitted-p.Transmitted
				fl["bytes_recv_delta"], fl["bytes_sent_delta"] = dr, ds
				if secs > 0 {
					fl["bytes_recv_per_sec"] = round2(float64(dr) / secs)
					fl["bytes_sent_per_sec"] = round2(float64(ds) / secs)
				}
			}
			ifaces[n.Name] = fl
		}
		mp.prevNet, mp.prevTime = cur, now
		out = append(out, pluginFields{"network_monitor", map[string]any{"bytes_recv": recv, "bytes_sent": sent, "interfaces": ifaces}})
	}
	return out
}

func percent(part, whole uint64) float64 {
	if whole == 0 {
		return 0
	}
	return round2(100 * float64(part) / float64(whole))
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }

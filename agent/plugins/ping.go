package plugins

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sync"
	"time"
)

// pingMonitor is hbc's ping_monitor: round-trip time, loss and jitter of
// ICMP echoes to each configured host.
type pingMonitor struct {
	hosts   []string
	count   int
	timeout time.Duration
	log     *slog.Logger
	warned  sync.Once
}

func newPingMonitor(o options, log *slog.Logger) (*pingMonitor, error) {
	hosts, err := o.strings("hosts", nil)
	if err != nil || len(hosts) == 0 {
		return nil, err
	}
	count := 3
	if n, ok, err := o.number("count"); err != nil {
		return nil, err
	} else if ok {
		if n < 1 || n > 100 {
			return nil, fmt.Errorf("count: want 1 to 100 echoes, got %v", n)
		}
		count = int(n)
	}
	timeout, err := o.seconds("timeout", time.Second)
	if err != nil {
		return nil, err
	}
	return &pingMonitor{hosts: hosts, count: count, timeout: timeout, log: log}, nil
}

func (*pingMonitor) Name() string { return "ping_monitor" }

// pingResult is one host's figures.
type pingResult struct {
	Address  string  `json:"address,omitempty"`
	Sent     int     `json:"sent"`
	Received int     `json:"received"`
	Loss     float64 `json:"packet_loss"`
	RTT      float64 `json:"rtt_avg_ms"`
	Min      float64 `json:"rtt_min_ms"`
	Max      float64 `json:"rtt_max_ms"`
	Jitter   float64 `json:"jitter_ms"`
	Socket   string  `json:"socket,omitempty"`
	Error    string  `json:"error,omitempty"`
}

func (p *pingMonitor) Collect(ctx context.Context) (Fields, error) {
	hosts := map[string]any{}
	for _, h := range p.hosts {
		r := p.ping(ctx, h)
		if r.Error != "" {
			p.warned.Do(func() { p.log.Warn("ping_monitor cannot ping", "host", h, "err", r.Error) })
		}
		hosts[h] = r
	}
	return Fields{"hosts": hosts, "host_count": len(hosts)}, nil
}

func (p *pingMonitor) ping(ctx context.Context, host string) pingResult {
	r := pingResult{Sent: p.count, Loss: 100}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	ips, err := net.DefaultResolver.LookupIP(rctx, "ip4", host)
	cancel()
	if err != nil || len(ips) == 0 {
		r.Error = fmt.Sprintf("resolve %s: %v", host, err)
		return r
	}
	r.Address = ips[0].String()
	rtts, kind, err := echo(ctx, ips[0].To4(), p.count, p.timeout)
	r.Socket = kind
	if err != nil {
		r.Error = err.Error()
		r.Sent = 0
		return r
	}
	summarize(&r, rtts)
	return r
}

// summarize fills the figures from the round-trip times of the echoes
// answered.
func summarize(r *pingResult, rtts []time.Duration) {
	r.Received = len(rtts)
	if r.Sent > 0 {
		r.Loss = round(float64(r.Sent-r.Received) / float64(r.Sent) * 100)
	}
	if len(rtts) == 0 {
		return
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	sum, lo, hi, jit := 0.0, math.Inf(1), 0.0, 0.0
	for i, d := range rtts {
		v := ms(d)
		sum += v
		lo, hi = math.Min(lo, v), math.Max(hi, v)
		if i > 0 {
			jit += math.Abs(v - ms(rtts[i-1]))
		}
	}
	r.RTT = math.Round(sum/float64(len(rtts))*1000) / 1000
	r.Min, r.Max = math.Round(lo*1000)/1000, math.Round(hi*1000)/1000
	if len(rtts) > 1 {
		r.Jitter = math.Round(jit/float64(len(rtts)-1)*1000) / 1000
	}
}

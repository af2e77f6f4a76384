package service

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mbvm/mb/monitor"
)

// BenchmarkThresholdToWebhook measures the latency from a sample crossing
// a threshold (the Observe call) to the webhook request reaching a local
// receiver, through the whole service: the alert state saved to SQLite,
// the notification written to the outbox (synchronous=FULL), the
// dispatcher kicked, and the HTTP POST. One op is one new alert on a new
// host; p50 and p99 are reported.
func BenchmarkThresholdToWebhook(b *testing.B) {
	var mu sync.Mutex
	waiting := map[string]chan struct{}{}
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		host := between(string(body), `"host":"`, `"`)
		mu.Lock()
		ch := waiting[host]
		delete(waiting, host)
		mu.Unlock()
		if ch != nil {
			close(ch)
		}
	}))
	defer recv.Close()
	s := start(b, b.TempDir(), webhookConfig(recv.URL+"/hook"))
	e := s.Engine()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		host := fmt.Sprintf("h%07d", i)
		observeCPU(b, e, host, 10)
		ch := make(chan struct{})
		mu.Lock()
		waiting[host] = ch
		mu.Unlock()
		t0 := time.Now()
		observeCPU(b, e, host, 95)
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			b.Fatalf("no webhook request for %s", host)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}

func between(s, from, to string) string {
	_, rest, ok := strings.Cut(s, from)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, to)
	return v
}

// BenchmarkIngest10kHosts measures the whole service (engine, journal,
// SQLite store with minute rollups flushed every simulated minute, the
// per-second Tick) taking in the metrics of 10,000 hosts reporting every
// 10 s: one op is one 10-second interval of the fleet (4 plugin reports
// per host, 37 numeric fields). Simulated time advances 10 s per op, so
// the run is compressed; the figures are the process's CPU time per
// interval as a percentage of one core over those 10 s, and its peak RSS.
func BenchmarkIngest10kHosts(b *testing.B) {
	const hosts = 10000
	const interval = 10 * time.Second
	var now atomic.Int64
	now.Store(time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()).UTC() }
	dir := b.TempDir()
	path := writeConfig(b, dir, `
interval: 10
grace: 5
thresholds:
  cpu_monitor:
    cpu_percent: {warning: 80, critical: 90}
  memory_monitor:
    percent: {warning: 85, critical: 95}
  disk_monitor:
    partitions:
      /:
        percent: {warning: 80, critical: 90}
`)
	s, err := New(context.Background(), Options{ConfigPath: path, StateDir: filepath.Join(dir, "state"), Logger: quietLogger(), Clock: clock})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	names := make([]string, hosts)
	for i := range names {
		names[i] = fmt.Sprintf("vm-%05d", i)
	}
	round := 0
	var observeWall, flushWall time.Duration
	flushes := 0
	interval1 := func() {
		round++
		for sec := 0; sec < 10; sec++ {
			now.Add(int64(time.Second))
			if err := s.engine.Tick(ctx, clock()); err != nil {
				b.Fatal(err)
			}
		}
		t := clock()
		t0 := time.Now()
		for i, h := range names {
			for _, o := range vmObservations(h, t, float64((i+round)%60)) {
				if err := s.engine.Observe(ctx, o); err != nil {
					b.Fatal(err)
				}
			}
		}
		observeWall += time.Since(t0)
		if round%6 == 0 { // a simulated minute
			t1 := time.Now()
			if err := s.rollups.FlushBefore(ctx, clock()); err != nil {
				b.Fatal(err)
			}
			flushWall += time.Since(t1)
			flushes++
		}
	}
	interval1() // the hosts appear
	observeWall, flushWall, flushes = 0, 0, 0
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		interval1()
	}
	b.StopTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) / time.Duration(b.N)
	b.ReportMetric(100*cpu.Seconds()/interval.Seconds(), "%core")
	b.ReportMetric(float64(hwm())/(1<<20), "peakRSS-MiB")
	b.ReportMetric(observeWall.Seconds()/float64(b.N), "observe-s/interval")
	if flushes > 0 {
		b.ReportMetric(flushWall.Seconds()/float64(flushes), "flush-s/minute")
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "liveHeap-MiB")
	b.ReportMetric(float64(s.engine.Stats().Observations)/float64(b.N+1)/interval.Seconds(), "obs/s")
}

// hwm is the process's peak resident set size in bytes (VmHWM).
func hwm() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// vmObservations is one interval of a VM's metrics in hbd's plugin shapes
// (as the daemon maps the agent's metrics document).
func vmObservations(host string, now time.Time, x float64) []monitor.Observation {
	part := func(p float64) map[string]any {
		return map[string]any{"total": 1e10, "used": 5e9 + x, "free_gb": 5 - x/100, "percent": p}
	}
	nic := func() map[string]any {
		return map[string]any{"bytes_recv": 1e9 + x, "bytes_sent": 2e9 + x, "bytes_recv_delta": x, "bytes_sent_delta": x}
	}
	return []monitor.Observation{
		{Host: host, Source: "vm", Time: now, RTT: time.Millisecond, Plugin: "cpu_monitor", Fields: map[string]any{
			"cpu_percent": x, "cpu_user": x, "cpu_system": x, "cpu_iowait": x, "cpu_steal": x,
			"load_1": x, "load_5": x, "load_15": x, "cpu_core_count": 4, "uptime_seconds": 1000 + x}},
		{Host: host, Source: "vm", Time: now, Plugin: "memory_monitor", Fields: map[string]any{
			"memory_total": 4e9, "memory_used": 1e9 + x, "memory_available": 3e9 - x, "percent": x,
			"swap_total": 1e9, "swap_used": x, "swap_percent": x}},
		{Host: host, Source: "vm", Time: now, Plugin: "disk_monitor", Fields: map[string]any{
			"partitions": map[string]any{"/": part(x), "/data": part(x)}}},
		{Host: host, Source: "vm", Time: now, Plugin: "network_monitor", Fields: map[string]any{
			"eth0": nic(), "eth1": nic()}},
	}
}

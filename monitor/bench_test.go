package monitor_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/mbvm/mb/monitor"
	"github.com/mbvm/mb/monitor/store"
	"github.com/mbvm/mb/monitor/threshold"
)

func f64(v float64) *float64 { return &v }

// BenchmarkObserve measures the engine's ingest: one op is one plugin
// observation of 1,000 hosts in turn (cpu_monitor with 10 fields, 2 of them
// with rules), including the sample rings and a rollup aggregator (without
// its flushes to SQLite, which BenchmarkRollupFlush measures).
func BenchmarkObserve(b *testing.B) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(b.TempDir(), "m.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	e, err := monitor.New(monitor.Options{
		Settings: monitor.Settings{Thresholds: threshold.Spec{"cpu_monitor": {
			"cpu_percent": {Warning: f64(80), Critical: f64(90)},
			"load_1":      {Warning: f64(8)},
		}}},
		Samples: st.NewRollups(),
	})
	if err != nil {
		b.Fatal(err)
	}
	hosts := make([]string, 1000)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("host-%04d", i)
	}
	t0 := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fields := map[string]any{
			"cpu_percent": float64(i % 70), "cpu_user": 10.0, "cpu_system": 5.0, "cpu_iowait": 0.5,
			"cpu_steal": 0.0, "load_1": 0.5, "load_5": 0.4, "load_15": 0.3, "cpu_core_count": 4, "uptime_seconds": 1000 + i,
		}
		if err := e.Observe(ctx, monitor.Observation{Host: hosts[i%len(hosts)], Source: "vm", Time: t0.Add(time.Duration(i) * time.Millisecond),
			Plugin: "cpu_monitor", Fields: fields}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "obs/s")
}

// BenchmarkRollupFlush measures writing rollups: one op is one field's
// minute aggregate (and its share of the hour row) written to SQLite in
// batches of 10,000.
func BenchmarkRollupFlush(b *testing.B) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(b.TempDir(), "m.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	r := st.NewRollups()
	t0 := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.AddSample(fmt.Sprintf("host-%04d", i%1000), fmt.Sprintf("f%d", (i/1000)%10), t0.Add(time.Duration(i/10000)*time.Minute), float64(i))
		if i%10000 == 9999 {
			if err := r.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := r.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkHostMemory reports the engine's heap per host: 1,000 hosts
// reporting cpu, memory, disk and network data (42 numeric fields) 32
// times, so every sample ring is full. One op is the whole fleet.
func BenchmarkHostMemory(b *testing.B) {
	ctx := context.Background()
	const hosts = 1000
	for i := 0; i < b.N; i++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		e, err := monitor.New(monitor.Options{Settings: monitor.Settings{Thresholds: threshold.Spec{
			"cpu_monitor": {"cpu_percent": {Warning: f64(80)}}, "memory_monitor": {"percent": {Warning: f64(90)}},
		}}})
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		for round := 0; round < 32; round++ {
			for h := 0; h < hosts; h++ {
				name := fmt.Sprintf("host-%05d", h)
				now := t0.Add(time.Duration(round) * 10 * time.Second)
				for _, o := range fleetObservations(name, now, float64(round)) {
					if err := e.Observe(ctx, o); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/hosts, "heapB/host")
		runtime.KeepAlive(e)
	}
}

// fleetObservations is one interval of a typical VM's metrics, in hbd's
// plugin shapes.
func fleetObservations(host string, now time.Time, x float64) []monitor.Observation {
	part := func(p float64) map[string]any {
		return map[string]any{"total": 1e10, "used": 5e9 + x, "free": 5e9 - x, "percent": p}
	}
	nic := func() map[string]any {
		return map[string]any{"bytes_recv": 1e9 + x, "bytes_sent": 2e9 + x, "bytes_recv_delta": x, "bytes_sent_delta": x}
	}
	return []monitor.Observation{
		{Host: host, Source: "vm", Time: now, RTT: time.Millisecond, Plugin: "cpu_monitor", Fields: map[string]any{
			"cpu_percent": x, "cpu_user": x, "cpu_system": x, "cpu_iowait": x, "cpu_steal": x, "cpu_idle": 100 - x,
			"load_1": x, "load_5": x, "load_15": x, "cpu_core_count": 4, "uptime_seconds": 1000 + x}},
		{Host: host, Source: "vm", Time: now, Plugin: "memory_monitor", Fields: map[string]any{
			"memory_total": 4e9, "memory_used": 1e9 + x, "memory_available": 3e9 - x, "memory_free": 2e9, "percent": x,
			"swap_total": 1e9, "swap_used": x, "swap_percent": x}},
		{Host: host, Source: "vm", Time: now, Plugin: "disk_monitor", Fields: map[string]any{
			"partitions": map[string]any{"/": part(x), "/data": part(x), "/boot": part(x)}}},
		{Host: host, Source: "vm", Time: now, Plugin: "network_monitor", Fields: map[string]any{
			"eth0": nic(), "eth1": nic()}},
	}
}

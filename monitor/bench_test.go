package monitor_test

import (
	"context"
	"fmt"
	"path/filepath"
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

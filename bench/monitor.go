package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mbvm/mb/bench/procfs"
	"github.com/mbvm/mb/monitor"
	"github.com/mbvm/mb/monitor/service"
	"github.com/mbvm/mb/monitor/threshold"
)

// monitorPart measures the monitor against its targets: threshold
// evaluations on one core, the CPU and memory of a monitor process taking
// in 10,000 hosts' reports every 10 s, and the latency from a sample
// crossing a threshold to the webhook request reaching a local receiver.
func monitorPart() part {
	return part{name: "monitor", rows: []rowDef{
		{id: "monitor.eval", name: "monitor: one threshold evaluation (rule lookup and level) on one core; 1,000 ns is 1 million a second", unit: "ns", target: &target{"<", 1000}},
		{id: "monitor.ingest.cpu", name: "monitor: CPU of the monitor process taking in N hosts reporting every 10 s (4 plugin reports each: 33 numeric fields and the RTT), per window", unit: "% of a core", target: &target{"<", 5}},
		{id: "monitor.ingest.rss", name: "monitor: resident memory (RSS) of that process, highest per window", unit: "MiB", target: &target{"<", 300}},
		{id: "monitor.notify.p50", name: "monitor: a sample crossing a threshold until the webhook request reaches a local receiver, p50 per run", unit: "ms"},
		{id: "monitor.notify.p99", name: "monitor: the same, p99 per run", unit: "ms", target: &target{"<", 1000}},
	}, run: runMonitor}
}

func runMonitor(ctx context.Context, e *env, r *results) error {
	runEval(e, r)
	if err := runNotify(ctx, e, r); err != nil {
		return err
	}
	return runIngest(ctx, e, r)
}

// runEval times threshold lookups and levels over a set of rules like a
// VM's (a few exact rules, a generic one), in one goroutine.
func runEval(e *env, r *results) {
	f := func(v float64) *float64 { return &v }
	set, err := threshold.Compile(threshold.Spec{
		"cpu_monitor":    {"cpu_percent": {Warning: f(80), Critical: f(90), Hysteresis: f(0.05)}, "load_1": {Warning: f(8)}},
		"memory_monitor": {"percent": {Warning: f(85), Critical: f(95)}},
		"disk_monitor":   {"percent": {Warning: f(80), Critical: f(90)}},
	})
	if err != nil {
		r.notMeasured("monitor.eval", err.Error())
		return
	}
	fields := []struct{ plugin, path string }{
		{"cpu_monitor", "cpu_percent"}, {"cpu_monitor", "load_1"}, {"memory_monitor", "percent"},
		{"disk_monitor", "partitions./.percent"}, {"disk_monitor", "partitions./data.percent"},
	}
	const n = 2_000_000
	var samples []float64
	for range e.cfg.runs {
		lvl := threshold.OK
		t0 := time.Now()
		for i := 0; i < n; i++ {
			fl := fields[i%len(fields)]
			m, ok := set.Lookup(fl.plugin, fl.path)
			if ok {
				lvl = m.Rule.Level(float64(i%100), lvl)
			}
		}
		samples = append(samples, float64(time.Since(t0).Nanoseconds())/n)
	}
	r.set("monitor.eval", samples)
	sort.Float64s(samples)
	r.note("monitor.eval", "%d evaluations per run, %.1f million a second at the median; exact and generic (disk partitions) rules", n, 1e3/samples[len(samples)/2])
}

// runNotify runs a monitor service in this process with a webhook channel
// to a local receiver, and times new alerts from Observe to the request.
func runNotify(ctx context.Context, e *env, r *results) error {
	var mu sync.Mutex
	waiting := map[string]chan struct{}{}
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		_, rest, _ := strings.Cut(string(body), `"host":"`)
		host, _, _ := strings.Cut(rest, `"`)
		mu.Lock()
		ch := waiting[host]
		delete(waiting, host)
		mu.Unlock()
		if ch != nil {
			close(ch)
		}
	}))
	defer recv.Close()
	dir := filepath.Join(e.work, "monitor-notify")
	cfg := filepath.Join(dir, "monitor.yaml")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	text := fmt.Sprintf("notification_channels:\n  hook:\n    type: webhook\n    url: %s/hook\nthresholds:\n  cpu_monitor:\n    cpu_percent: {warning: 80, critical: 90}\n", recv.URL)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		return err
	}
	s, err := service.New(ctx, service.Options{ConfigPath: cfg, StateDir: filepath.Join(dir, "state"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx) }()
	defer func() {
		stop()
		<-done
		s.Close()
	}()
	eng := s.Engine()
	observe := func(host string, v float64) error {
		return eng.Observe(ctx, monitor.Observation{Host: host, Source: "vm", Plugin: "cpu_monitor", Fields: map[string]any{"cpu_percent": v}})
	}
	per := 200
	if e.cfg.quick {
		per = 50
	}
	var p50s, p99s []float64
	for run := range e.cfg.runs {
		lat := make([]float64, 0, per)
		for i := range per {
			host := fmt.Sprintf("n%d-%04d", run, i)
			if err := observe(host, 10); err != nil {
				return err
			}
			ch := make(chan struct{})
			mu.Lock()
			waiting[host] = ch
			mu.Unlock()
			t0 := time.Now()
			if err := observe(host, 95); err != nil {
				return err
			}
			select {
			case <-ch:
			case <-time.After(30 * time.Second):
				return fmt.Errorf("no webhook request for %s within 30 s", host)
			case <-ctx.Done():
				return ctx.Err()
			}
			lat = append(lat, ms(time.Since(t0)))
		}
		sort.Float64s(lat)
		p50s = append(p50s, lat[len(lat)/2])
		p99s = append(p99s, lat[(len(lat)*99+99)/100-1])
	}
	r.set("monitor.notify.p50", p50s)
	r.set("monitor.notify.p99", p99s)
	for _, id := range []string{"monitor.notify.p50", "monitor.notify.p99"} {
		r.note(id, "%d crossings per run, each a new alert on a new host: alert state and outbox row in SQLite (synchronous=FULL), then the POST", per)
	}
	return nil
}

// runIngest builds bench/monitorsim, runs it with N simulated hosts and
// reads its CPU time and RSS from /proc over windows after every host has
// reported once.
func runIngest(ctx context.Context, e *env, r *results) error {
	hosts, windows, window := 10000, 6, 30*time.Second
	if e.cfg.quick {
		hosts, windows, window = 1000, 2, 10*time.Second
	}
	for _, id := range []string{"monitor.ingest.cpu", "monitor.ingest.rss"} {
		r.note(id, "N = %d, %d windows of %s after a first round; one process: the monitor service as `mb monitor serve` runs it (SQLite store, journal, rollups) with the reports generated in the same process (bench/monitorsim)", hosts, windows, window)
	}
	dir := filepath.Join(e.work, "monitor-ingest")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	bin := filepath.Join(e.work, "bin", "monitorsim")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./bench/monitorsim")
	build.Dir = e.root
	if src := os.Getenv("BENCH_SRC"); src != "" {
		build.Dir = src
	}
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build monitorsim: %w: %s", err, out)
	}
	cfg := filepath.Join(dir, "monitor.yaml")
	text := "interval: 10\ngrace: 5\nthresholds:\n  cpu_monitor:\n    cpu_percent: {warning: 80, critical: 90}\n  memory_monitor:\n    percent: {warning: 85, critical: 95}\n  disk_monitor:\n    partitions:\n      /:\n        percent: {warning: 80, critical: 90}\n"
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, "-c", cfg, "-state", filepath.Join(dir, "state"), "-hosts", fmt.Sprint(hosts), "-interval", "10s")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}()
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("monitorsim said %q", line)
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			return fmt.Errorf("%w: %s", err, stderr.String())
		}
	case <-time.After(5 * time.Minute):
		return fmt.Errorf("monitorsim not ready after 5 minutes: %s", stderr.String())
	case <-ctx.Done():
		return ctx.Err()
	}
	pid := cmd.Process.Pid
	// A minute more so rollups, Tick's saves and the GC reach their pace.
	settle := time.Minute
	if e.cfg.quick {
		settle = 5 * time.Second
	}
	select {
	case <-time.After(settle):
	case <-ctx.Done():
		return ctx.Err()
	}
	var cpu, rss []float64
	for range windows {
		st0, err := procfs.ReadStat(pid)
		if err != nil {
			return err
		}
		t0 := time.Now()
		peak := uint64(0)
		for time.Since(t0) < window {
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return ctx.Err()
			}
			if v, err := procfs.RSS(pid); err == nil && v > peak {
				peak = v
			}
		}
		st1, err := procfs.ReadStat(pid)
		if err != nil {
			return err
		}
		ticks := float64(st1.UTime + st1.STime - st0.UTime - st0.STime)
		cpu = append(cpu, ticks/userHZ/time.Since(t0).Seconds()*100)
		rss = append(rss, mib(peak))
	}
	r.set("monitor.ingest.cpu", cpu)
	r.set("monitor.ingest.rss", rss)
	return nil
}

// Command monitorsim is the load of `make bench`'s monitor part: it runs
// the monitor service exactly as `mb monitor serve -c FILE` does (same
// package, options, Run loop, store, journal and housekeeping) and feeds it,
// in the same process, the reports of N simulated hosts every interval
// (cpu, memory, disk and network plugins as the daemon maps a VM's
// metrics: 33 numeric fields and the RTT), spread evenly over the
// interval. It prints "ready" once every host has reported, then runs
// until SIGTERM or SIGINT; the bench measures its CPU and memory from
// /proc. Building the report maps in the same process stands in for
// decoding them from the network.
//
//	monitorsim -c monitor.yaml -state DIR -hosts 10000 -interval 10s
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/mbvm/mb/monitor"
	"github.com/mbvm/mb/monitor/service"
)

func main() {
	cfg := flag.String("c", "", "monitor.yaml")
	state := flag.String("state", "", "state directory")
	hosts := flag.Int("hosts", 10000, "simulated hosts")
	interval := flag.Duration("interval", 10*time.Second, "reporting interval of each host")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the steady state (from 30 s after ready until exit) to this file")
	memProfile := flag.String("memprofile", "", "write a heap profile to this file on exit")
	flag.Parse()
	profile = *cpuProfile
	if err := run(*cfg, *state, *hosts, *interval, *memProfile); err != nil {
		fmt.Fprintln(os.Stderr, "monitorsim:", err)
		os.Exit(1)
	}
}

func run(cfg, state string, hosts int, interval time.Duration, memProfile string) error {
	if cfg == "" || state == "" || hosts <= 0 || interval <= 0 {
		return fmt.Errorf("give -c FILE -state DIR, and positive -hosts and -interval")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	s, err := service.New(ctx, service.Options{ConfigPath: cfg, StateDir: state, Logger: log})
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	names := make([]string, hosts)
	for i := range names {
		names[i] = fmt.Sprintf("sim-%05d", i)
	}
	// Every step (interval/100) the next hundredth of the hosts reports.
	const steps = 100
	tick := time.NewTicker(interval / steps)
	defer tick.Stop()
	eng := s.Engine()
	round, step := 0, 0
	for {
		select {
		case <-ctx.Done():
			if memProfile != "" {
				if f, err := os.Create(memProfile); err == nil {
					runtime.GC()
					_ = pprof.WriteHeapProfile(f)
					f.Close()
				}
			}
			err := <-done
			if cerr := s.Close(); err == nil {
				err = cerr
			}
			return err
		case <-tick.C:
		}
		now := time.Now()
		for i := step * hosts / steps; i < (step+1)*hosts/steps; i++ {
			for _, o := range observations(names[i], now, float64((i+round)%60)) {
				if err := eng.Observe(ctx, o); err != nil && ctx.Err() == nil {
					return err
				}
			}
		}
		if step++; step == steps {
			step = 0
			if round++; round == 1 {
				fmt.Println("ready")
			}
			if round == 4 && profile != "" {
				if err := startProfile(profile); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
		}
	}
}

// profile is the -cpuprofile file.
var profile string

func startProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	return pprof.StartCPUProfile(f)
}

// observations is one interval of a VM's metrics in hbd's plugin shapes.
func observations(host string, now time.Time, x float64) []monitor.Observation {
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

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/mbvm/mb/bench/rig"
	"github.com/mbvm/mb/vmhost"
)

// clientLevels are the numbers of concurrent clients of the control-plane
// part.
var clientLevels = []int{1, 8, 64}

func controlRowID(mode string, clients int, what string) string {
	return fmt.Sprintf("control.%s.%d.%s", mode, clients, what)
}

// controlPart measures vmhost status round trips against a real
// `vmhost --backend fake` process: with vmhost.Client (a new connection
// per call, as the daemon does it) at 1, 8 and 64 concurrent clients, and
// on one kept-open connection at 1 client (the protocol's own cost).
func controlPart() part {
	var defs []rowDef
	for _, n := range clientLevels {
		var p99 *target
		if n == 1 {
			p99 = &target{"<", 1}
		}
		defs = append(defs,
			rowDef{id: controlRowID("call", n, "p50"), name: fmt.Sprintf("vmhost status p50, %d client(s), new connection per call", n), unit: "ms"},
			rowDef{id: controlRowID("call", n, "p99"), name: fmt.Sprintf("vmhost status p99, %d client(s), new connection per call", n), unit: "ms", target: p99},
			rowDef{id: controlRowID("call", n, "rps"), name: fmt.Sprintf("vmhost status throughput, %d client(s), new connection per call", n), unit: "req/s"},
		)
	}
	defs = append(defs,
		rowDef{id: controlRowID("conn", 1, "p50"), name: "vmhost status p50, 1 client, kept-open connection", unit: "ms"},
		rowDef{id: controlRowID("conn", 1, "p99"), name: "vmhost status p99, 1 client, kept-open connection", unit: "ms", target: &target{"<", 1}},
		rowDef{id: controlRowID("conn", 1, "rps"), name: "vmhost status throughput, 1 client, kept-open connection", unit: "req/s"},
	)
	return part{name: "control", rows: defs, run: runControl}
}

func runControl(ctx context.Context, e *env, r *results) error {
	if err := e.needVMHost(); err != nil {
		return err
	}
	runs := max(e.cfg.runs, 1)
	if !e.cfg.quick {
		runs = max(runs, 5)
	}
	h, err := rig.NewHome("mbbc")
	if err != nil {
		return err
	}
	defer removeAll(h)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	vh, err := rig.StartVMHost(sctx, e.bins.VMHost, filepath.Join(h, "vms", "c1"), h, nil, "--backend", "fake")
	if err != nil {
		return fmt.Errorf("start a fake vmhost: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := vh.Stop(sctx, vmhost.ModeKill); err != nil {
			e.log.Warn("stop the fake vmhost", "err", err)
		}
	}()
	sock := vh.Socket()
	// Warm up both paths.
	if _, err := statusLoad(ctx, sock, 1, 100, false); err != nil {
		return err
	}
	if _, err := statusLoad(ctx, sock, 1, 100, true); err != nil {
		return err
	}
	samples := map[string][]float64{}
	add := func(mode string, n int, s loadResult) {
		samples[controlRowID(mode, n, "p50")] = append(samples[controlRowID(mode, n, "p50")], s.p50)
		samples[controlRowID(mode, n, "p99")] = append(samples[controlRowID(mode, n, "p99")], s.p99)
		samples[controlRowID(mode, n, "rps")] = append(samples[controlRowID(mode, n, "rps")], s.rps)
	}
	for range runs {
		for _, n := range clientLevels {
			per := max(e.cfg.controlRequests/n, 50)
			s, err := statusLoad(ctx, sock, n, per, false)
			if err != nil {
				return err
			}
			add("call", n, s)
			if n == 1 {
				s, err := statusLoad(ctx, sock, 1, per, true)
				if err != nil {
					return err
				}
				add("conn", 1, s)
			}
		}
	}
	for id, xs := range samples {
		r.set(id, xs)
	}
	return nil
}

// loadResult summarises one load run.
type loadResult struct {
	p50, p99 float64 // milliseconds
	rps      float64
}

// statusLoad runs clients goroutines each making perClient status calls,
// on a new connection per call (vmhost.Client) or on one kept-open
// connection per client, and returns the latency percentiles over all
// calls and the aggregate rate. Any failed call fails the run.
func statusLoad(ctx context.Context, sock string, clients, perClient int, keep bool) (loadResult, error) {
	lat := make([][]float64, clients)
	errs := make([]error, clients)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			lat[i], errs[i] = statusCalls(ctx, sock, perClient, keep)
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(t0)
	var all []float64
	for i := range clients {
		if errs[i] != nil {
			return loadResult{}, fmt.Errorf("status load (%d clients): %w", clients, errs[i])
		}
		all = append(all, lat[i]...)
	}
	return loadResult{p50: quantile(all, 0.5), p99: quantile(all, 0.99), rps: float64(len(all)) / elapsed.Seconds()}, nil
}

func statusCalls(ctx context.Context, sock string, n int, keep bool) ([]float64, error) {
	out := make([]float64, 0, n)
	if !keep {
		c := vmhost.NewClient(sock)
		for range n {
			t := time.Now()
			resp, err := c.Call(ctx, vmhost.Request{Method: vmhost.MethodStatus})
			if err != nil {
				return nil, err
			}
			out = append(out, ms(time.Since(t)))
			if resp.State == "" {
				return nil, fmt.Errorf("status reply without a state")
			}
		}
		return out, nil
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", sock, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	br := bufio.NewReader(conn)
	req := []byte(`{"method":"status"}` + "\n")
	for range n {
		t := time.Now()
		if _, err := conn.Write(req); err != nil {
			return nil, fmt.Errorf("send status to %s: %w", sock, err)
		}
		line, err := br.ReadBytes('\n')
		if err != nil {
			return nil, fmt.Errorf("read status reply from %s: %w", sock, err)
		}
		out = append(out, ms(time.Since(t)))
		var resp vmhost.Response
		if err := json.Unmarshal(line, &resp); err != nil || !resp.OK {
			return nil, fmt.Errorf("bad status reply %q from %s: %v", line, sock, err)
		}
	}
	return out, nil
}

package main

import (
	"context"
	"fmt"
	"time"

	"github.com/mbvm/mb/bench/procfs"
	"github.com/mbvm/mb/bench/rig"
)

// scalePart runs many fake-backend VMs through the daemon and measures the
// starts, `mb ls --json` and the memory of the daemon and the vmhosts.
func scalePart() part {
	return part{name: "scale", rows: []rowDef{
		{id: "scale.starts", name: "scale: N sequential `mb start` of fake VMs, total", unit: "s"},
		{id: "scale.start_each", name: "scale: one `mb start` of a fake VM (per call)", unit: "ms"},
		{id: "scale.ls", name: "scale: `mb ls --json` with N VMs running", unit: "ms", target: &target{"<", 100}},
		{id: "scale.api_list", name: "scale: GET /v1/vms on mb.sock with N VMs (the daemon's part of `mb ls`, no CLI process)", unit: "ms"},
		{id: "scale.daemon_rss", name: "scale: daemon resident memory (RSS) with N VMs", unit: "MiB"},
		{id: "scale.vmhost_rss", name: "scale: vmhost resident memory (RSS), median over the VMs", unit: "MiB", target: &target{"<", 15}},
		{id: "scale.vmhost_pss", name: "scale: vmhost proportional memory (PSS), median over the VMs", unit: "MiB"},
	}, run: runScale}
}

func runScale(ctx context.Context, e *env, r *results) error {
	n := e.cfg.fakeVMs
	for _, id := range []string{"scale.starts", "scale.start_each", "scale.ls", "scale.api_list", "scale.daemon_rss", "scale.vmhost_rss", "scale.vmhost_pss"} {
		r.note(id, "N = %d", n)
	}
	s, err := e.openSession(ctx, "mbbf", false)
	if err != nil {
		return err
	}
	defer s.close(e)
	h, mb, d := s.home, s.mb, s.daemon

	var each []float64
	t0 := time.Now()
	for i := range n {
		name := fmt.Sprintf("f%03d", i)
		p, err := mb.WriteSpec(name, fmt.Sprintf("name: %s\nbackend: fake\nrestart: \"no\"\n", name))
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		t := time.Now()
		_, err = mb.Run(cctx, "start", name, "-f", p)
		cancel()
		if err != nil {
			return fmt.Errorf("start fake VM %d of %d: %w", i+1, n, err)
		}
		each = append(each, ms(time.Since(t)))
	}
	total := time.Since(t0)
	r.set("scale.starts", []float64{total.Seconds()})
	r.set("scale.start_each", each)

	lsRuns := 10
	if e.cfg.quick {
		lsRuns = 3
	}
	var ls []float64
	for range lsRuns {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		t := time.Now()
		vms, err := mb.List(cctx)
		took := time.Since(t)
		cancel()
		if err != nil {
			return err
		}
		running := 0
		for _, v := range vms {
			if v.State == "running" {
				running++
			}
		}
		if len(vms) != n || running != n {
			return fmt.Errorf("mb ls --json lists %d VMs, %d running; want %d running", len(vms), running, n)
		}
		ls = append(ls, ms(took))
	}
	r.set("scale.ls", ls)
	var api []float64
	for range lsRuns {
		t := time.Now()
		if _, err := rig.DaemonGet(ctx, mb.Socket(), "/v1/vms"); err != nil {
			return err
		}
		api = append(api, ms(time.Since(t)))
	}
	r.set("scale.api_list", api)

	rss, err := procfs.RSS(d.PID())
	if err != nil {
		return fmt.Errorf("daemon memory: %w", err)
	}
	r.set("scale.daemon_rss", []float64{mib(rss)})

	procs, err := rig.FindProcesses(h)
	if err != nil {
		return err
	}
	if len(procs.VMHosts) != n {
		return fmt.Errorf("found %d vmhost processes, want %d", len(procs.VMHosts), n)
	}
	var vr, vp []float64
	for _, pid := range procs.VMHosts {
		rss, err := procfs.RSS(pid)
		if err != nil {
			return fmt.Errorf("vmhost memory: %w", err)
		}
		pss, err := procfs.PSS(pid)
		if err != nil {
			return fmt.Errorf("vmhost memory: %w", err)
		}
		vr, vp = append(vr, mib(rss)), append(vp, mib(pss))
	}
	r.set("scale.vmhost_rss", vr)
	r.set("scale.vmhost_pss", vp)
	r.note("scale.vmhost_rss", "spread over the %d vmhosts", n)
	r.note("scale.vmhost_pss", "spread over the %d vmhosts", n)
	return nil
}

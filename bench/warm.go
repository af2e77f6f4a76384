package main

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mbvm/mb/vm/snapshot"
)

// warmPart compares resuming a suspended mini VM with booting it cold, in
// alternating pairs on the same VM: cold `mb start` (after `mb stop`) to
// agent-ready, `mb suspend`, then `mb start` (a resume) to agent-ready.
// Both sides are the wall time of the `mb start` command, which returns
// once the guest agent answers.
func warmPart() part {
	return part{name: "warm", rows: []rowDef{
		{id: "warm.cold", name: "warm: cold `mb start` of a stopped mini VM (256 MiB) to agent-ready", unit: "ms"},
		{id: "warm.resume", name: "warm: `mb start` of the suspended VM (resume) to agent-ready", unit: "ms"},
		{id: "warm.ratio", name: "warm: ratio resume / cold (of medians; spread of per-pair ratios)", unit: "×", target: &target{"<=", 0.1}},
		{id: "warm.suspend", name: "warm: `mb suspend` until the command returns (state saved, QEMU gone)", unit: "ms"},
		{id: "warm.state_size", name: "warm: saved state on disk after a suspend (device state + allocated RAM file)", unit: "MiB"},
	}, run: runWarm}
}

func runWarm(ctx context.Context, e *env, r *results) error {
	s, err := e.openSession(ctx, "mbbw", true)
	if err != nil {
		return err
	}
	defer s.close(e)
	mb := s.mb
	const name = "warm"
	specPath, err := mb.WriteSpec(name, "name: warm\nimage: mini\nmemory: 256M\ncpus: 1\nrestart: \"no\"\n")
	if err != nil {
		return err
	}
	timed := func(args ...string) (time.Duration, error) {
		cctx, cancel := context.WithTimeout(ctx, bootTimeout)
		defer cancel()
		t0 := time.Now()
		_, err := mb.Run(cctx, args...)
		return time.Since(t0), err
	}
	// Create the VM and warm the caches, untimed.
	if _, err := timed("start", name, "-f", specPath); err != nil {
		return err
	}
	if _, err := timed("stop", name); err != nil {
		return err
	}
	runs := max(e.cfg.runs, 3)
	var cold, resume, susp, size, pairs []float64
	for i := range runs {
		c, err := timed("start", name)
		if err != nil {
			return fmt.Errorf("cold start %d: %w", i, err)
		}
		// Let the guest settle after its boot, as a VM in use would.
		time.Sleep(time.Second)
		sd, err := timed("suspend", name)
		if err != nil {
			return fmt.Errorf("suspend %d: %w", i, err)
		}
		size = append(size, mib(diskUsage(mb.VMDir(name), snapshot.StateName, snapshot.MemoryName)))
		w, err := timed("start", name)
		if err != nil {
			return fmt.Errorf("resume %d: %w", i, err)
		}
		if _, err := timed("stop", name); err != nil {
			return fmt.Errorf("stop %d: %w", i, err)
		}
		cold, resume, susp = append(cold, ms(c)), append(resume, ms(w)), append(susp, ms(sd))
		pairs = append(pairs, ms(w)/ms(c))
		e.log.Info("warm pair", "run", i, "cold_ms", ms(c), "resume_ms", ms(w), "suspend_ms", ms(sd))
	}
	r.set("warm.cold", cold)
	r.set("warm.resume", resume)
	r.set("warm.suspend", susp)
	r.set("warm.state_size", size)
	r.setRatio("warm.ratio", median(resume)/median(cold), pairs)
	return nil
}

// diskUsage is the space the named files in dir take on disk (allocated
// blocks: a sparse RAM file counts only what the guest touched).
func diskUsage(dir string, names ...string) uint64 {
	var total uint64
	for _, n := range names {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(dir, n), &st); err == nil {
			total += uint64(st.Blocks) * 512
		}
	}
	return total
}

package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/mbvm/mb/bench/procfs"
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
		{id: "warm.snapshot_time", name: "warm: `mb snapshot save` of the running mini VM until it returns", unit: "ms"},
		{id: "warm.snapshot_size", name: "warm: snapshot size on disk (state + sparse RAM copy)", unit: "MiB"},
		{id: "warm.clones", name: "warm: `mb clone` of N VMs from one snapshot until every clone's agent answers", unit: "s"},
		{id: "warm.colds", name: "warm: N cold `mb start`s of mini VMs in parallel until every agent answers", unit: "s"},
		{id: "warm.clones_ratio", name: "warm: ratio N clones / N cold starts", unit: "×"},
		{id: "warm.clone_pss", name: "warm: QEMU PSS per clone (RAM shared copy-on-write with the snapshot)", unit: "MiB"},
		{id: "warm.cold_pss", name: "warm: QEMU PSS per cold-booted VM", unit: "MiB"},
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
	return runClones(ctx, e, r, timed, mb.VMDir, func(n string) (string, error) {
		return mb.WriteSpec(n, "name: "+n+"\nimage: mini\nmemory: 256M\ncpus: 1\nrestart: \"no\"\n")
	})
}

// runClones takes a snapshot of the (stopped) VM warm after a cold boot,
// starts N clones of it at once, then N fresh VMs cold at once, and
// measures the time until all are ready and each one's QEMU PSS.
func runClones(ctx context.Context, e *env, r *results, timed func(...string) (time.Duration, error), vmDir func(string) string, writeSpec func(string) (string, error)) error {
	n := e.cfg.densityVMs
	for _, id := range []string{"warm.clones", "warm.colds", "warm.clone_pss", "warm.cold_pss"} {
		r.note(id, "N = %d", n)
	}
	if _, err := timed("start", "warm"); err != nil {
		return err
	}
	time.Sleep(time.Second)
	st, err := timed("snapshot", "save", "warm", "s")
	if err != nil {
		return err
	}
	r.set("warm.snapshot_time", []float64{ms(st)})
	sdir := snapshot.Dir(vmDir("warm"), "s")
	r.set("warm.snapshot_size", []float64{mib(diskUsage(sdir, snapshot.SnapState, snapshot.SnapMemory, snapshot.SnapManifest))})
	if _, err := timed("stop", "warm"); err != nil {
		return err
	}
	clones := make([]string, n)
	for i := range clones {
		clones[i] = fmt.Sprintf("c%d", i)
	}
	ct, err := timed(append([]string{"clone", "warm"}, append(clones, "--from", "s")...)...)
	if err != nil {
		return err
	}
	cpss, err := qemuPSS(vmDir, clones)
	if err != nil {
		return err
	}
	if _, err := timed(append([]string{"rm", "--force"}, clones...)...); err != nil {
		return err
	}
	colds := make([]string, n)
	specs := make([]string, n)
	for i := range colds {
		colds[i] = fmt.Sprintf("k%d", i)
		if specs[i], err = writeSpec(colds[i]); err != nil {
			return err
		}
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range colds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = timed("start", colds[i], "-f", specs[i])
		}()
	}
	wg.Wait()
	kt := time.Since(t0)
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("cold start %s: %w", colds[i], err)
		}
	}
	kpss, err := qemuPSS(vmDir, colds)
	if err != nil {
		return err
	}
	if _, err := timed(append([]string{"rm", "--force"}, colds...)...); err != nil {
		return err
	}
	r.set("warm.clones", []float64{ct.Seconds()})
	r.set("warm.colds", []float64{kt.Seconds()})
	r.set("warm.clones_ratio", []float64{ct.Seconds() / kt.Seconds()})
	r.set("warm.clone_pss", cpss)
	r.set("warm.cold_pss", kpss)
	return nil
}

// qemuPSS is the PSS of each named VM's QEMU, in MiB.
func qemuPSS(vmDir func(string) string, names []string) ([]float64, error) {
	var out []float64
	for _, n := range names {
		pid, err := qemuPID(vmDir(n))
		if err != nil {
			return nil, err
		}
		pss, err := procfs.PSS(pid)
		if err != nil {
			return nil, err
		}
		out = append(out, mib(pss))
	}
	return out, nil
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

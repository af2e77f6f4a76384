package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mbvm/mb/bench/procfs"
	"github.com/mbvm/mb/vm/snapshot"
	"github.com/mbvm/mb/vmhost"
)

// densityGuestMiB is the guest memory of each density VM.
const densityGuestMiB = 128

// densityPart starts N mini VMs at once and measures the host memory each
// costs beyond its guest RAM.
//
// Method: for each VM, vmhost's PSS plus QEMU's PSS minus the PSS of
// QEMU's guest-RAM mapping (the anonymous mapping of the guest's size).
// Under TCG a guest touches only part of its RAM, so "QEMU RSS − 128 MiB"
// would understate the overhead (even go negative); subtracting the guest
// RAM mapping's own resident size counts exactly what is not guest memory.
// PSS divides shared pages (QEMU's and vmhost's binaries and libraries)
// among the processes sharing them, so the per-VM figures add up.
func densityPart() part {
	return part{name: "density", rows: []rowDef{
		{id: "density.start_all", name: "density: start N mini VMs in parallel (128 MiB, tcg) until every `mb start` returned ready", unit: "s"},
		{id: "density.overhead", name: "density: host memory per VM beyond guest RAM (vmhost PSS + QEMU PSS − guest-RAM PSS)", unit: "MiB"},
		{id: "density.vmhost_pss", name: "density: vmhost PSS per VM", unit: "MiB"},
		{id: "density.qemu_pss", name: "density: QEMU PSS per VM (guest RAM included)", unit: "MiB"},
		{id: "density.qemu_code", name: "density: QEMU's anonymous executable memory, resident (the TCG translation cache)", unit: "MiB"},
		{id: "density.guest_resident", name: "density: guest RAM resident per VM (of 128 MiB)", unit: "MiB"},
		{id: "density.qemu_rss_minus_guest", name: "density: vmhost RSS + QEMU RSS − 128 MiB (the naive figure)", unit: "MiB"},
	}, run: runDensity}
}

func runDensity(ctx context.Context, e *env, r *results) error {
	n := e.cfg.densityVMs
	r.note("density.start_all", "N = %d", n)
	s, err := e.openSession(ctx, "mbbd", true, "MB_ACCEL=tcg")
	if err != nil {
		return err
	}
	defer s.close(e)
	mb := s.mb

	names := make([]string, n)
	specs := make([]string, n)
	for i := range n {
		names[i] = fmt.Sprintf("d%d", i)
		doc := fmt.Sprintf("name: %s\nimage: mini\nmemory: %dM\ncpus: 1\naccel: tcg\nrestart: \"no\"\n", names[i], densityGuestMiB)
		if specs[i], err = mb.WriteSpec(names[i], doc); err != nil {
			return err
		}
	}
	cctx, cancel := context.WithTimeout(ctx, time.Duration(n)*bootTimeout)
	defer cancel()
	errs := make([]error, n)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = mb.Run(cctx, "start", names[i], "-f", specs[i])
		}()
	}
	wg.Wait()
	took := time.Since(t0)
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("start %s: %w", names[i], err)
		}
	}
	r.set("density.start_all", []float64{took.Seconds()})

	var over, vpss, qpss, guest, naive, code []float64
	for _, name := range names {
		dir := mb.VMDir(name)
		qpid, err := qemuPID(dir)
		if err != nil {
			return err
		}
		vpid, err := pidFile(filepath.Join(dir, vmhost.PIDName))
		if err != nil {
			return err
		}
		m, err := vmMemory(vpid, qpid, densityGuestMiB<<20)
		if err != nil {
			return fmt.Errorf("memory of %s: %w", name, err)
		}
		over = append(over, mib(m.vmhostPSS+m.qemuPSS-m.guestPSS))
		vpss, qpss, guest = append(vpss, mib(m.vmhostPSS)), append(qpss, mib(m.qemuPSS)), append(guest, mib(m.guestRSS))
		naive = append(naive, mib(m.vmhostRSS+m.qemuRSS)-densityGuestMiB)
		code = append(code, mib(m.codeRSS))
	}
	r.set("density.overhead", over)
	r.set("density.vmhost_pss", vpss)
	r.set("density.qemu_pss", qpss)
	r.set("density.guest_resident", guest)
	r.set("density.qemu_rss_minus_guest", naive)
	r.set("density.qemu_code", code)
	for _, id := range []string{"density.overhead", "density.vmhost_pss", "density.qemu_pss", "density.qemu_code", "density.guest_resident", "density.qemu_rss_minus_guest"} {
		r.note(id, "spread over the %d VMs", n)
	}
	return nil
}

// vmMem is the memory of one VM's processes, in bytes.
type vmMem struct {
	vmhostRSS, vmhostPSS uint64
	qemuRSS, qemuPSS     uint64
	// guestRSS and guestPSS are those of QEMU's guest-RAM mapping.
	guestRSS, guestPSS uint64
	// codeRSS is the resident size of QEMU's anonymous executable
	// mappings: under TCG, the translated-code cache (1 GiB reserved by
	// QEMU 7.2's default tb-size, filled as the guest runs new code).
	codeRSS uint64
}

// vmMemory measures a VM's vmhost and QEMU. The guest RAM is the largest
// anonymous mapping between the guest's size and 4 MiB more (QEMU may
// align it).
func vmMemory(vmhostPID, qemuPID int, guestBytes uint64) (vmMem, error) {
	var m vmMem
	var err error
	if m.vmhostRSS, err = procfs.RSS(vmhostPID); err != nil {
		return m, err
	}
	if m.vmhostPSS, err = procfs.PSS(vmhostPID); err != nil {
		return m, err
	}
	if m.qemuRSS, err = procfs.RSS(qemuPID); err != nil {
		return m, err
	}
	if m.qemuPSS, err = procfs.PSS(qemuPID); err != nil {
		return m, err
	}
	maps, err := procfs.Mappings(qemuPID)
	if err != nil {
		return m, err
	}
	guest := -1
	for i, mp := range maps {
		// Anonymous, the memfd of a cold-booted VM (backend/qemu
		// ram_linux.go), or the RAM file of a resumed VM (memory.ram).
		ram := mp.Name == "" || strings.HasPrefix(mp.Name, "/memfd:mb-guest-ram") || strings.HasSuffix(mp.Name, "/"+snapshot.MemoryName)
		if ram && mp.Size() >= guestBytes && mp.Size() <= guestBytes+4<<20 {
			if guest < 0 || mp.RSS > maps[guest].RSS {
				guest = i
			}
		}
	}
	if guest < 0 {
		return m, fmt.Errorf("no anonymous mapping of the guest's %d MiB in QEMU (PID %d)", guestBytes>>20, qemuPID)
	}
	m.guestRSS, m.guestPSS = maps[guest].RSS, maps[guest].PSS
	for _, mp := range maps {
		if mp.Name == "" && strings.Contains(mp.Perms, "x") {
			m.codeRSS += mp.RSS
		}
	}
	return m, nil
}

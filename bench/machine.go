package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/mbvm/mb/bench/procfs"
)

// gitRevision names the commit the benchmark measures and whether the
// work tree differs from it ("unknown" outside a git checkout).
func gitRevision(ctx context.Context, dir string) (rev string, dirty bool) {
	out, err := exec.CommandContext(ctx, "git", "-C", dir, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown", false
	}
	rev = strings.TrimSpace(string(out))
	st, err := exec.CommandContext(ctx, "git", "-C", dir, "status", "--porcelain", "--untracked-files=no").Output()
	return rev, err == nil && len(strings.TrimSpace(string(st))) > 0
}

// describeMachine collects the CPU model, cores, memory, kernel, QEMU
// version and the accelerator QEMU can use here.
func describeMachine(ctx context.Context) Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), CPUModel: "unknown CPU"}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	m.MemoryBytes, _ = procfs.MemTotal()
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(cctx, "qemu-system-x86_64", "--version").Output(); err == nil {
		m.QEMU = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	m.Accelerator = hostAccel()
	m.LoadStart = loadAverage()
	return m
}

// loadAverage is the 1-minute load average (0 when unknown).
func loadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	_, _ = fmt.Sscan(string(data), &l)
	return l
}

// hostAccel names the accelerator before any VM ran: MB_ACCEL when set,
// else unknown. The VM parts replace it with what the running VM reports
// (vmhost info's "accel"), which is the only trustworthy answer: /dev/kvm
// can exist and open yet not work.
func hostAccel() string {
	if a := os.Getenv("MB_ACCEL"); a != "" && a != "auto" {
		return a + " (MB_ACCEL)"
	}
	return "not determined (no VM was booted)"
}

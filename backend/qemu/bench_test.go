package qemu

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"
)

// BenchmarkBootToReady measures the time from start to the mini image's
// ready line on the serial console, through the Controller (what vmhost
// does) and with bare QEMU on the same command line, in alternating runs.
// MB_BENCH_ROUNDS sets the number of runs of each (default 5).
//
//	go test -run '^$' -bench BootToReady -benchtime 1x ./backend/qemu
func BenchmarkBootToReady(b *testing.B) {
	img := miniImage(b)
	vmSlot(b)
	rounds := 5
	if n, err := strconv.Atoi(os.Getenv("MB_BENCH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	for b.Loop() {
		var viaMB, bare []time.Duration
		for i := range rounds {
			// Alternate which goes first, so neither always runs on a
			// machine warmed (or loaded) by the other.
			if i%2 == 0 {
				viaMB = append(viaMB, bootViaController(b, img))
				bare = append(bare, bootBare(b, img))
			} else {
				bare = append(bare, bootBare(b, img))
				viaMB = append(viaMB, bootViaController(b, img))
			}
		}
		mb, q := median(viaMB), median(bare)
		// The minimum is the run least disturbed by other load on the
		// machine; the median is the figure the target is stated in.
		mbMin, qMin := slices.Min(viaMB), slices.Min(bare)
		b.Logf("boot to ready over %d alternating runs: mb median %s (min %s) %v; bare qemu median %s (min %s) %v; ratio of medians %.3f, of minimums %.3f",
			rounds, mb, mbMin, viaMB, q, qMin, bare, mb.Seconds()/q.Seconds(), mbMin.Seconds()/qMin.Seconds())
		b.ReportMetric(mb.Seconds(), "s/boot-mb")
		b.ReportMetric(q.Seconds(), "s/boot-bare")
		b.ReportMetric(mb.Seconds()/q.Seconds(), "ratio")
	}
}

func bootViaController(b *testing.B, img testImage) time.Duration {
	opts := vmOptions(b, img, "qbench", "")
	opts.Logger = nil
	t0 := time.Now()
	vm := startVM(b, opts)
	waitSerial(b, vm, img.readyLine())
	d := time.Since(t0)
	ctx, cancel := context.WithTimeout(context.Background(), stopDeadline)
	defer cancel()
	if err := vm.ForceStop(ctx); err != nil {
		b.Fatal(err)
	}
	return d
}

// bootBare runs QEMU with the command line the Controller builds, in a
// fresh directory with a fresh SSH port, and waits for the same line.
func bootBare(b *testing.B, img testImage) time.Duration {
	opts := vmOptions(b, img, "qbench", "")
	s := *opts.Spec
	s.SetDefaults()
	arch, err := hostArch(runtime.GOARCH)
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := resolveBoot(context.Background(), opts.Dir, img.home, &s, arch)
	if err != nil {
		b.Fatal(err)
	}
	cfg.Accel = detectAccel(realHost()).Accel
	if cfg.SSHPort, err = freePort(); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(binaryName(arch), buildArgs(cfg)...)
	serial := filepath.Join(cfg.Dir, serialLogName)
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	deadline := t0.Add(bootDeadline)
	for {
		data, _ := os.ReadFile(serial)
		if bytes.Contains(data, []byte(img.readyLine())) {
			return time.Since(t0)
		}
		if time.Now().After(deadline) {
			b.Fatalf("bare qemu: no ready line within %s", bootDeadline)
		}
		time.Sleep(serialPoll)
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

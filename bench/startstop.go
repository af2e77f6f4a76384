package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mbvm/mb/bench/procfs"
	"github.com/mbvm/mb/bench/rig"
	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/vm/snapshot"
	"github.com/mbvm/mb/vmhost"
)

// Timeouts of the VM parts: generous, a busy 2-core machine under TCG is
// slow, and a timeout is a failure of the run, not a number.
const (
	bootTimeout = 3 * time.Minute
	stopTimeout = 90 * time.Second
	// pollEvery is how often the ready line and process exits are polled;
	// it bounds the error of every VM timing (the same on both sides).
	pollEvery = 5 * time.Millisecond
)

// Stop variants measured by the stop rows: `mb stop`, vmhost's stop in
// one mode, and SIGKILL of the vmhost (its QEMU must follow it).
var stopVariants = []string{"cli", vmhost.ModeAgent, vmhost.ModeACPI, "kill9"}

// startStopPart boots the mini VM through the daemon and bare QEMU with the
// same command line, alternately, and stops the daemon's VM through each
// stop path in turn.
func startStopPart() part {
	return part{name: "start/stop", rows: []rowDef{
		{id: "start.mb", name: "start to ready: `mb start` (daemon running) to the ready line on the serial console", unit: "ms"},
		{id: "start.bare", name: "start to ready: bare qemu-system-x86_64 with vmhost's command line to the ready line", unit: "ms"},
		{id: "start.ratio", name: "start to ready: ratio mb / bare (of medians; spread of per-pair ratios)", unit: "×", target: &target{"<=", 1.05}},
		{id: "start.ratio_min", name: "start to ready: ratio of the fastest runs, min mb / min bare (least disturbed by load)", unit: "×"},
		{id: "start.cli", name: "`mb start` until the command returns (waits for the agent)", unit: "ms"},
		{id: "stop.cli", name: "stop: `mb stop` until QEMU exited", unit: "ms"},
		{id: "stop.agent", name: "stop: vmhost stop mode agent (guest-shutdown) until QEMU exited", unit: "ms"},
		{id: "stop.acpi", name: "stop: vmhost stop mode acpi (power button) until QEMU exited", unit: "ms"},
		{id: "stop.kill9", name: "crash: vmhost killed with SIGKILL until its QEMU exited", unit: "ms", target: &target{"<", 1000}},
	}, run: runStartStop}
}

func runStartStop(ctx context.Context, e *env, r *results) error {
	s, err := e.openSession(ctx, "mbbs", true)
	if err != nil {
		return err
	}
	defer s.close(e)
	h, mb := s.home, s.mb

	const name = "bench"
	specPath, err := mb.WriteSpec(name, "name: bench\nimage: mini\nmemory: 256M\ncpus: 1\nrestart: \"no\"\n")
	if err != nil {
		return err
	}
	vmDir := mb.VMDir(name)
	ready := e.img.ReadyLine()
	bareDir := filepath.Join(h, "bare")
	if err := os.MkdirAll(bareDir, 0o700); err != nil {
		return fmt.Errorf("make %s: %w", bareDir, err)
	}

	var mbStart, bareStart, cliStart []time.Duration
	stops := map[string][]time.Duration{}
	var bareArgv []string
	stoppedBy := map[string]bool{}
	if !e.cfg.quick {
		// One untimed pair first: creating the VM and cold caches belong
		// to neither side.
		if _, _, err := timeMBStart(ctx, mb, name, specPath, vmDir, ready); err != nil {
			return fmt.Errorf("warm-up, mb side: %w", err)
		}
		if bareArgv, err = bareCommandLine(vmDir, bareDir); err != nil {
			return err
		}
		e.noteAccel(vmDir)
		if _, err := timeStop(ctx, mb, name, vmDir, "cli"); err != nil {
			return fmt.Errorf("warm-up stop: %w", err)
		}
		if _, err := timeBareStart(ctx, bareArgv, bareDir, ready); err != nil {
			return fmt.Errorf("warm-up, bare side: %w", err)
		}
	}
	iterations := max(e.cfg.stopRuns, 1)
	for i := range iterations {
		variant := stopVariants[i%len(stopVariants)]
		var startT, bt, st time.Duration
		mbSide := func() error {
			var cliT time.Duration
			var err error
			if startT, cliT, err = timeMBStart(ctx, mb, name, specPath, vmDir, ready); err != nil {
				return fmt.Errorf("run %d, mb side: %w", i+1, err)
			}
			mbStart, cliStart = append(mbStart, startT), append(cliStart, cliT)
			if bareArgv == nil {
				if bareArgv, err = bareCommandLine(vmDir, bareDir); err != nil {
					return err
				}
				e.noteAccel(vmDir)
			}
			if st, err = timeStop(ctx, mb, name, vmDir, variant); err != nil {
				return fmt.Errorf("run %d, stop %s: %w", i+1, variant, err)
			}
			stops[variant] = append(stops[variant], st)
			if variant == "cli" {
				if v, err := mb.Get(ctx, name); err == nil && v.StoppedBy != "" {
					stoppedBy[v.StoppedBy] = true
				}
			}
			return nil
		}
		// The bare side runs while the mb VM is down. A quick run needs
		// one pair only.
		bareSide := func() error {
			if e.cfg.quick && i > 0 {
				return nil
			}
			var err error
			if bt, err = timeBareStart(ctx, bareArgv, bareDir, ready); err != nil {
				return fmt.Errorf("run %d, bare side: %w", i+1, err)
			}
			bareStart = append(bareStart, bt)
			return nil
		}
		// Alternate which side goes first, so neither always follows the
		// other's shutdown.
		sides := []func() error{mbSide, bareSide}
		if bareArgv != nil && i%2 == 1 {
			sides[0], sides[1] = bareSide, mbSide
		}
		for _, side := range sides {
			if err := side(); err != nil {
				return err
			}
		}
		e.log.Info("start/stop run", "run", i+1, "of", iterations, "mb_ms", ms(startT), "bare_ms", ms(bt), "stop", variant, "stop_ms", ms(st))
	}
	r.set("start.mb", durationsMS(mbStart))
	r.set("start.bare", durationsMS(bareStart))
	r.set("start.cli", durationsMS(cliStart))
	// The medians and the ratio use the paired runs only.
	paired, bare := durationsMS(mbStart[:len(bareStart)]), durationsMS(bareStart)
	var ratios []float64
	for i := range bare {
		ratios = append(ratios, paired[i]/bare[i])
	}
	r.setRatio("start.ratio", median(paired)/median(bare), ratios)
	r.set("start.ratio_min", []float64{quantile(paired, 0) / quantile(bare, 0)})
	for _, v := range stopVariants {
		r.set("stop."+v, durationsMS(stops[v]))
	}
	if len(stoppedBy) > 0 {
		var by []string
		for b := range stoppedBy {
			by = append(by, b)
		}
		sort.Strings(by)
		r.note("stop.cli", "mode auto; stopped by %s", strings.Join(by, ", "))
	}
	if _, err := mb.Run(ctx, "rm", "--force", name); err != nil {
		e.log.Warn("remove the bench VM", "err", err)
	}
	return nil
}

// timeMBStart runs `mb start` and returns the time to the ready line in the
// VM's serial.log (only output after the call counts) and the time until
// the command returned.
func timeMBStart(ctx context.Context, mb *rig.MB, name, specPath, vmDir, ready string) (toReady, cli time.Duration, err error) {
	serial := filepath.Join(vmDir, layout.SerialLog)
	offset := rig.FileSize(serial)
	cctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	args := []string{"start", name, "-f", specPath}
	t0 := time.Now()
	cliDone := make(chan error, 1)
	go func() {
		_, err := mb.Run(cctx, args...)
		cliDone <- err
	}()
	werr := rig.WaitForLine(cctx, serial, ready, offset, pollEvery)
	toReady = time.Since(t0)
	if err := <-cliDone; err != nil {
		return 0, 0, err
	}
	cli = time.Since(t0)
	if werr != nil {
		return 0, 0, werr
	}
	return toReady, cli, nil
}

// qemuPID reads the VM's QEMU PID from qemu.pid.
func qemuPID(vmDir string) (int, error) {
	return pidFile(filepath.Join(vmDir, layout.QEMUPID))
}

// pidFile reads a PID file.
func pidFile(p string) (int, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return 0, fmt.Errorf("read PID file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("bad PID in %s: %q", p, data)
	}
	return pid, nil
}

// timeStop stops the running VM through one path and returns the time
// until its QEMU process has exited.
func timeStop(ctx context.Context, mb *rig.MB, name, vmDir, variant string) (time.Duration, error) {
	pid, err := qemuPID(vmDir)
	if err != nil {
		return 0, err
	}
	if !procfs.Alive(pid) {
		return 0, fmt.Errorf("QEMU (PID %d) is not running before the stop", pid)
	}
	cctx, cancel := context.WithTimeout(ctx, stopTimeout)
	defer cancel()
	t0 := time.Now()
	errc := make(chan error, 1)
	go func() {
		if variant == "kill9" {
			vpid, err := pidFile(filepath.Join(vmDir, vmhost.PIDName))
			if err == nil {
				err = syscall.Kill(vpid, syscall.SIGKILL)
			}
			errc <- err
			return
		}
		if variant == "cli" {
			_, err := mb.Run(cctx, "stop", name)
			errc <- err
			return
		}
		resp, err := vmhost.NewClient(filepath.Join(vmDir, vmhost.SocketName)).Call(cctx,
			vmhost.Request{Method: vmhost.MethodStop, Mode: variant, TimeoutSeconds: int(stopTimeout / time.Second / 2)})
		if err == nil && resp.StoppedBy != variant {
			err = fmt.Errorf("stop mode %s: VM stopped by %q", variant, resp.StoppedBy)
		}
		errc <- err
	}()
	if err := procfs.WaitGone(cctx, pid, pollEvery); err != nil {
		return 0, err
	}
	took := time.Since(t0)
	if err := <-errc; err != nil {
		return 0, err
	}
	// The daemon must have noticed before the next start.
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	want := "stopped"
	if variant == "kill9" {
		want = "crashed"
	}
	if _, err := mb.WaitState(wctx, name, want); err != nil {
		return 0, err
	}
	return took, nil
}

// bareCommandLine reads the running QEMU's command line from /proc and
// rewrites only the paths inside the VM directory to bareDir. The binary
// is QEMU's own executable (/proc/<pid>/exe).
func bareCommandLine(vmDir, bareDir string) ([]string, error) {
	pid, err := qemuPID(vmDir)
	if err != nil {
		return nil, err
	}
	argv, err := procfs.Cmdline(pid)
	if err != nil {
		return nil, err
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return nil, fmt.Errorf("find QEMU's executable: %w", err)
	}
	out := []string{exe}
	copied := map[string]bool{}
	for _, a := range argv[1:] {
		if strings.HasPrefix(a, "memory-backend-file,") && strings.Contains(a, ",mem-path=/proc/self/fd/") {
			// vmhost hands QEMU the guest RAM as a memfd (its fd 3); the
			// bare QEMU makes the same kind of memory itself.
			a = bareMemfd(a)
		}
		if strings.Contains(a, vmDir+"/") {
			// A regular file in the VM directory (a disk overlay, a seed)
			// is copied; sockets, logs and the PID file are made by QEMU.
			for _, f := range filesUnder(a, vmDir) {
				if copied[f] {
					continue
				}
				copied[f] = true
				if err := copyRegular(filepath.Join(vmDir, f), filepath.Join(bareDir, f)); err != nil {
					return nil, err
				}
			}
			a = strings.ReplaceAll(a, vmDir+"/", bareDir+"/")
		}
		out = append(out, a)
	}
	return out, nil
}

// bareMemfd turns a memory-backend-file on an inherited memfd into a
// memory-backend-memfd with the same id, size and sharing.
func bareMemfd(arg string) string {
	fields := strings.Split(arg, ",")
	out := []string{"memory-backend-memfd"}
	for _, f := range fields[1:] {
		if !strings.HasPrefix(f, "mem-path=") {
			out = append(out, f)
		}
	}
	return strings.Join(out, ",")
}

// filesUnder returns the names of files inside dir that an argument names
// (QEMU options name paths after "=" or whole, separated by ",").
func filesUnder(arg, dir string) []string {
	var names []string
	for _, field := range strings.Split(arg, ",") {
		if _, v, ok := strings.Cut(field, "="); ok {
			field = v
		}
		if rest, ok := strings.CutPrefix(field, dir+"/"); ok && rest != "" && !strings.Contains(rest, "/") {
			names = append(names, rest)
		}
	}
	return names
}

// copyRegular copies src to dst when src is a regular file that is not a
// log or PID file; anything else is left for QEMU to create.
func copyRegular(src, dst string) error {
	st, err := os.Lstat(src)
	if err != nil || !st.Mode().IsRegular() || strings.HasSuffix(src, ".log") || strings.HasSuffix(src, ".pid") {
		return nil
	}
	if filepath.Base(src) == snapshot.MemoryName {
		// The guest RAM file: vmhost gives QEMU a new, empty (sparse) one
		// at every cold start, and so does timeBareStart. A copy of the
		// running VM's would hand the bare side RAM whose disk blocks are
		// already allocated (the run at 0374d7f did: ratio 1.25).
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy %s for the bare QEMU run: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("copy %s for the bare QEMU run: %w", src, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s for the bare QEMU run: %w", src, err)
	}
	return out.Close()
}

// timeBareStart runs QEMU with argv in bareDir, returns the time to the
// ready line in bareDir/serial.log, then kills QEMU and waits for it.
func timeBareStart(ctx context.Context, argv []string, bareDir, ready string) (time.Duration, error) {
	for _, n := range []string{layout.SerialLog, layout.QEMUPID, layout.QMPSocket, layout.ConsoleSocket, layout.AgentSocket, snapshot.MemoryName} {
		if err := os.Remove(filepath.Join(bareDir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("clean %s: %w", bareDir, err)
		}
	}
	out, err := os.OpenFile(filepath.Join(bareDir, "qemu.out"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, fmt.Errorf("open bare QEMU output: %w", err)
	}
	defer out.Close()
	cctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = bareDir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = rig.ChildSysProcAttr()
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start bare QEMU: %w", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	wctx, wcancel := context.WithCancel(cctx)
	defer wcancel()
	go func() {
		// QEMU dying early ends the wait for the line.
		select {
		case <-exited:
			wcancel()
		case <-wctx.Done():
		}
	}()
	werr := rig.WaitForLine(wctx, filepath.Join(bareDir, layout.SerialLog), ready, 0, pollEvery)
	took := time.Since(t0)
	early := false
	select {
	case <-exited:
		early = true
	default:
	}
	_ = cmd.Process.Kill()
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		return 0, errors.New("bare QEMU did not exit after SIGKILL")
	}
	if werr != nil {
		if early {
			return 0, fmt.Errorf("bare QEMU exited before the ready line (%v; see %s)", waitErr, filepath.Join(bareDir, "qemu.out"))
		}
		return 0, werr
	}
	return took, nil
}

// noteAccel records the accelerator the running VM uses (from vmhost info)
// for the machine description.
func (e *env) noteAccel(vmDir string) {
	if e.accel != "" {
		return
	}
	resp, err := vmhost.NewClient(filepath.Join(vmDir, vmhost.SocketName)).Info()
	if err != nil {
		return
	}
	if a, ok := resp.Details["accel"].(string); ok && a != "" {
		e.accel = a
	}
}

// cleanupHome kills whatever still runs from a home and removes it.
func cleanupHome(e *env, h string) {
	if err := rig.KillAll(h); err != nil {
		e.log.Warn("kill leftover processes", "home", h, "err", err)
	}
	removeAll(h)
}

func removeAll(dir string) { _ = os.RemoveAll(dir) }

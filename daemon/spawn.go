package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/internal/lockfile"
	"github.com/mbvm/mb/internal/logfile"
	"github.com/mbvm/mb/vmhost"
)

// VMHostEnv overrides where the daemon finds the vmhost binary.
const VMHostEnv = "MB_VMHOST"

// VMHostLogName is the log vmhost's stdout and stderr go to.
const VMHostLogName = "vmhost.log"

// FindVMHost returns the vmhost binary: $MB_VMHOST, else "vmhost" next to
// the running executable, else vmhost on PATH.
func FindVMHost() (string, error) {
	if p := os.Getenv(VMHostEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", VMHostEnv, p, err)
		}
		return p, nil
	}
	if exe, err := os.Executable(); err == nil {
		if resolved, err := filepath.EvalSymlinks(exe); err == nil {
			exe = resolved
		}
		p := filepath.Join(filepath.Dir(exe), "vmhost")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath("vmhost"); err == nil {
		return filepath.Abs(p)
	}
	return "", fmt.Errorf("vmhost binary not found next to the mb executable nor on PATH: install it beside mb (make build) or set %s", VMHostEnv)
}

// rotateVMHostLog caps vmhost.log; the vmhost keeps it open for appending,
// so it is copied and truncated.
func rotateVMHostLog(dir string) {
	_ = logfile.RotateIfLarger(filepath.Join(dir, VMHostLogName), logfile.DefaultMaxSize, logfile.DefaultKeep)
}

// cleanStale removes the files a dead vmhost left behind, as internal/layout
// lists them for every backend (the last run's backend may differ from the
// spec's now). Only call it when the vmhost lock is free.
func cleanStale(dir string) {
	for _, n := range layout.StaleFiles("") {
		_ = os.Remove(filepath.Join(dir, n))
	}
}

// spawn starts a vmhost for v in its own session, with its output going to
// vmhost.log, and starts watching it. The caller holds v.op.
func (d *Daemon) spawn(v *vm) (*run, error) {
	if d.cfg.VMHost == "" {
		return nil, errors.New("no vmhost binary configured: install vmhost beside mb or set " + VMHostEnv)
	}
	held, pid, err := lockfile.Probe(v.file(vmhost.LockName))
	if err != nil {
		return nil, err
	}
	if held {
		return nil, fmt.Errorf("a vmhost (PID %d) already runs VM %s outside this daemon: stop it first (kill %d)", pid, v.name, pid)
	}
	cleanStale(v.dir)
	logPath := v.file(VMHostLogName)
	if st, err := os.Stat(logPath); err == nil && st.Size() > logfile.DefaultMaxSize {
		_ = logfile.Rotate(logPath, logfile.DefaultKeep)
	}
	logf, err := logfile.OpenAppend(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(d.cfg.VMHost, "--dir", v.dir)
	cmd.Dir = v.dir
	cmd.Env = vmhostEnv(d.cfg.Home)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start vmhost %s: %w", d.cfg.VMHost, err)
	}
	r := &run{pid: cmd.Process.Pid, started: time.Now(), proc: cmd.Process,
		exited: make(chan struct{}), done: make(chan struct{})}
	go func() {
		// Reap the child so no zombie looks alive.
		_ = cmd.Wait()
		r.waitStatus = cmd.ProcessState
		close(r.exited)
	}()
	v.mu.Lock()
	v.cur, v.ready = r, false
	v.mu.Unlock()
	d.log.Info("spawned vmhost", "vm", v.name, "pid", r.pid)
	go d.watch(v, r)
	go d.collectGuestMessages(v, r, false)
	return r, nil
}

// waitRunning waits until the vmhost of r answers status with "running",
// or it exits, or ctx ends.
func (d *Daemon) waitRunning(ctx context.Context, v *vm, r *run) error {
	c := vmhost.NewClient(v.socket())
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := c.Call(cctx, vmhost.Request{Method: vmhost.MethodStatus})
		cancel()
		if err == nil && resp.State == vmhost.StateRunning {
			return nil
		}
		select {
		case <-r.done:
			v.mu.Lock()
			reason := v.reason
			v.mu.Unlock()
			return fmt.Errorf("VM %s did not start: %s (see %s)", v.name, reason, v.file(VMHostLogName))
		case <-ctx.Done():
			return fmt.Errorf("VM %s did not reach running in time (%w): see %s", v.name, context.Cause(ctx), v.file(VMHostLogName))
		case <-tick.C:
		}
	}
}

func withoutEnv(env []string, key string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}

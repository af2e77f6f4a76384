package qemu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/digitalocean/go-qemu/qmp"

	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/vmhost"
)

// Controller runs one QEMU process. It implements vmhost.VMController,
// vmhost.ModeStopper, vmhost.ForceStopReporter and vmhost.Describer. All
// methods are safe for concurrent use.
type Controller struct {
	log       *slog.Logger
	cfg       *bootConfig
	accel     accelChoice
	bin       qemuBinary
	args      []string
	cmd       *exec.Cmd
	startedAt time.Time
	stderr    *tailWriter
	mon       *monitor
	// agent is the guest agent client, nil when none is connected.
	agent guestAgent
	// cancel stops the helpers (log trimming, agent) once QEMU is gone.
	cancel context.CancelFunc

	// stopMu serialises Stop calls; ForceStop does not wait for it.
	stopMu sync.Mutex

	mu sync.Mutex
	// state is starting, running or stopping while QEMU lives.
	state string
	// panicked is set by a GUEST_PANICKED event.
	panicked bool
	// resets are the times of the guest's recent resets; crashLoop says
	// why QEMU was killed for resetting too often ("" otherwise).
	resets    []time.Time
	crashLoop string
	// shutdownReason is the reason of QEMU's SHUTDOWN event.
	shutdownReason string
	// killed is set when this controller sent SIGKILL as a requested stop.
	killed bool
	// phase is the stop phase in progress; reap turns it into stoppedBy,
	// so stoppedBy is set before anyone can see the VM as exited.
	phase     string
	stoppedBy string

	exited  chan struct{} // closed once QEMU is reaped and exitErr is set
	exitErr error
}

var (
	_ vmhost.VMController      = (*Controller)(nil)
	_ vmhost.ModeStopper       = (*Controller)(nil)
	_ vmhost.ForceStopReporter = (*Controller)(nil)
	_ vmhost.Describer         = (*Controller)(nil)
)

// Backend returns "qemu".
func (c *Controller) Backend() string { return "qemu" }

// SSHPort is the host port on 127.0.0.1 forwarded to the guest's port 22.
func (c *Controller) SSHPort() int { return c.cfg.SSHPort }

// PID is QEMU's process ID.
func (c *Controller) PID() int { return c.cmd.Process.Pid }

// State returns starting, running, stopping, stopped or error.
func (c *Controller) State() string {
	select {
	case <-c.exited:
		if c.exitErr != nil {
			return vmhost.StateError
		}
		return vmhost.StateStopped
	default:
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.panicked || c.crashLoop != "" {
		return vmhost.StateError
	}
	if c.mon != nil && c.mon.broken.Load() && c.state != vmhost.StateStopping {
		return vmhost.StateError
	}
	return c.state
}

// Wait blocks until QEMU has exited and returns nil for a clean stop (the
// guest powered off, or a stop this controller was asked for) and an error
// describing the crash otherwise.
func (c *Controller) Wait() error {
	<-c.exited
	return c.exitErr
}

// onEvent handles one QMP event. It runs on the monitor's drain goroutine
// and must not block.
func (c *Controller) onEvent(e qmp.Event) {
	c.log.Debug("qmp event", "event", e.Event, "data", e.Data)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch e.Event {
	case "SHUTDOWN":
		c.shutdownReason, _ = e.Data["reason"].(string)
		c.state = vmhost.StateStopping
	case "POWERDOWN":
		c.log.Info("ACPI power button pressed")
	case "GUEST_PANICKED":
		c.panicked = true
		c.log.Error("guest kernel panicked", "data", e.Data)
	case "RESUME":
		if c.state == vmhost.StateStarting {
			c.state = vmhost.StateRunning
		}
	case "RESET":
		c.log.Info("guest reset", "data", e.Data)
		if guest, ok := e.Data["guest"].(bool); ok && !guest {
			return // a reset the host asked for (system_reset)
		}
		c.noteResetLocked(time.Now())
	}
}

// A guest that resets crashLoopResets times within crashLoopWindow is in a
// crash loop (a kernel that panics before the pvpanic driver loads, with
// panic=N, reboots forever): the VM ends as crashed, so the restart policy
// and its limit apply.
const (
	crashLoopResets = 5
	crashLoopWindow = time.Minute
)

// noteResetLocked records a guest reset at now and, on a crash loop, kills
// QEMU as a crash. c.mu is held.
func (c *Controller) noteResetLocked(now time.Time) {
	keep := c.resets[:0]
	for _, t := range c.resets {
		if now.Sub(t) < crashLoopWindow {
			keep = append(keep, t)
		}
	}
	c.resets = append(keep, now)
	if len(c.resets) < crashLoopResets || c.crashLoop != "" {
		return
	}
	c.crashLoop = fmt.Sprintf("guest reset %d times in %d s (crash loop); see the end of %s", len(c.resets), int(crashLoopWindow/time.Second), c.cfg.path(serialLogName))
	c.log.Error("guest crash loop: killing qemu", "resets", len(c.resets), "window", crashLoopWindow)
	proc := c.cmd.Process
	go func() {
		if err := proc.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			c.log.Warn("kill qemu after a crash loop", "pid", proc.Pid, "err", err)
		}
	}()
}

// reap waits for QEMU's exit, classifies it and releases everything.
func (c *Controller) reap(done <-chan error) {
	waitErr := <-done
	c.mu.Lock()
	mon := c.mon
	c.mu.Unlock()
	if mon != nil {
		// Let the last events (GUEST_PANICKED, SHUTDOWN) arrive; the
		// connection closes with QEMU, so this is quick.
		select {
		case <-mon.drained:
		case <-time.After(5 * time.Second):
		}
		mon.close()
	}
	c.cancel()
	c.stopAgent()
	c.mu.Lock()
	c.stoppedBy = c.phase
	stoppedBy := c.stoppedBy
	c.mu.Unlock()
	c.dropOwnMemory(stoppedBy)
	c.exitErr = c.classifyExit(waitErr)
	if c.exitErr != nil {
		c.log.Error("qemu exited", "err", c.exitErr)
	} else {
		c.log.Info("qemu exited cleanly", "reason", c.shutdownReasonLocked())
	}
	close(c.exited)
}

func (c *Controller) shutdownReasonLocked() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.shutdownReason
}

// classifyExit turns QEMU's wait status into Wait's result.
func (c *Controller) classifyExit(waitErr error) error {
	c.mu.Lock()
	panicked, killed, crashLoop := c.panicked, c.killed, c.crashLoop
	c.mu.Unlock()
	pid := c.cmd.Process.Pid
	if crashLoop != "" {
		return errors.New(crashLoop)
	}
	if panicked {
		return fmt.Errorf("guest kernel panicked (QMP GUEST_PANICKED); see the end of %s", c.cfg.path(serialLogName))
	}
	if waitErr == nil {
		return nil
	}
	var ee *exec.ExitError
	if !errors.As(waitErr, &ee) {
		return fmt.Errorf("wait for qemu (pid %d): %w", pid, waitErr)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		if killed && ws.Signal() == syscall.SIGKILL {
			return nil
		}
		return fmt.Errorf("qemu (pid %d) was killed by signal %s", pid, ws.Signal())
	}
	return fmt.Errorf("qemu (pid %d) exited with status %d: %s", pid, ee.ExitCode(), c.stderr.String())
}

// Describe reports the VM's QEMU facts for the info method.
func (c *Controller) Describe() vmhost.Description {
	d := map[string]any{
		"accel":        string(c.accel.Accel),
		"accel_reason": c.accel.Reason,
		"qemu_pid":     c.cmd.Process.Pid,
		"qemu_binary":  c.bin.Path,
		"qemu_version": c.bin.Version.String(),
		"cpus":         c.cfg.CPUs,
		"memory_mib":   c.cfg.MemoryMiB,
		"serial_log":   c.cfg.path(serialLogName),
		"console_sock": c.cfg.path(consoleSockName),
		"agent_socket": c.cfg.path(agentSockName),
		"qmp_socket":   c.cfg.path(qmpSockName),
		"ssh_port":     c.cfg.SSHPort,
		"command_line": append([]string{c.bin.Path}, c.args...),
	}
	if c.cfg.Kernel != "" {
		d["kernel"] = c.cfg.Kernel
		d["initrd"] = c.cfg.Initrd
		d["cmdline"] = c.cfg.Cmdline
	}
	if len(c.cfg.Drives) > 0 {
		d["disk"] = c.cfg.Drives[0].Path
	}
	if c.cfg.FirmwareCode != "" {
		d["firmware"] = c.cfg.FirmwareCode
	}
	if len(c.cfg.Forwards) > 0 {
		fw := make([]string, len(c.cfg.Forwards))
		for i, f := range c.cfg.Forwards {
			fw[i] = f.String()
		}
		d["forwards"] = fw
	}
	paths := map[string]string{
		layout.PathConsole:   c.cfg.path(consoleSockName),
		layout.PathSerialLog: c.cfg.path(serialLogName),
		layout.PathAgent:     c.cfg.path(agentSockName),
		layout.PathQMP:       c.cfg.path(qmpSockName),
	}
	return vmhost.Description{Name: c.cfg.Name, StartedAt: c.startedAt, Details: d, Paths: paths}
}

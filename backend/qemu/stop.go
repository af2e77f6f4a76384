package qemu

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mbvm/mb/vmhost"
)

// forceQuitWait is how long ForceStop gives QMP quit before SIGKILL.
const forceQuitWait = 5 * time.Second

// killShare is the part of a stop's timeout kept for SIGKILL and the reap
// that follows: 10 %, between 200 ms and 2 s.
func killShare(timeout time.Duration) time.Duration {
	return min(max(timeout/10, 200*time.Millisecond), 2*time.Second)
}

// phase is one way of bringing the VM down.
type phase struct {
	name string
	// begin starts the phase; the VM is then given until the phase's
	// deadline to exit.
	begin func(ctx context.Context) error
}

// Stop brings the VM down with every phase in order (agent, acpi, quit,
// kill) inside timeout. Stopping a stopped VM returns nil.
func (c *Controller) Stop(ctx context.Context, timeout time.Duration) error {
	_, err := c.StopMode(ctx, timeout, vmhost.ModeAuto)
	return err
}

// StopMode stops the VM with one phase ("agent", "acpi", "quit", "kill") or
// all of them ("auto" or "") within timeout, and says which phase brought
// it down. It returns within timeout, the kill included: mode auto keeps
// the end of the timeout for SIGKILL. A single phase that does not bring
// the VM down within timeout is an error and leaves the VM running.
func (c *Controller) StopMode(ctx context.Context, timeout time.Duration, mode string) (vmhost.StopResult, error) {
	if mode == "" {
		mode = vmhost.ModeAuto
	}
	if timeout <= 0 {
		timeout = vmhost.DefaultStopTimeout
	}
	switch mode {
	case vmhost.ModeAuto, vmhost.ModeACPI, vmhost.ModeQuit, vmhost.ModeKill:
	case vmhost.ModeAgent:
		if c.agent == nil {
			return vmhost.StopResult{}, vmhost.WithCode(vmhost.CodeNotAvailable, errors.New("stop mode agent: no guest agent is connected to this VM (use mode acpi, quit or kill)"))
		}
	default:
		return vmhost.StopResult{}, vmhost.WithCode(vmhost.CodeNotAvailable, fmt.Errorf("unknown stop mode %q: accepted: auto, agent, acpi, quit, kill", mode))
	}
	c.stopMu.Lock()
	defer c.stopMu.Unlock()
	if c.isExited() {
		return vmhost.StopResult{StoppedBy: c.stoppedByPhase()}, nil
	}
	c.setState(vmhost.StateStopping)

	start := time.Now()
	steps := c.plan(mode, start, timeout)
	for _, st := range steps {
		pctx := ctx
		switch {
		case st.phase.name == vmhost.ModeKill:
			// SIGKILL is what guarantees the VM is down at the end, so it
			// runs even when the caller's context has run out.
			pctx = context.WithoutCancel(ctx)
		case ctx.Err() != nil && mode == vmhost.ModeAuto:
			continue // straight on to SIGKILL
		case ctx.Err() != nil:
			c.stopFailed()
			return vmhost.StopResult{}, fmt.Errorf("stop mode %s: %w", mode, ctx.Err())
		}
		by, err := c.runPhase(pctx, st.phase, st.until)
		if by != "" {
			c.log.Info("vm stopped", "stopped_by", by, "total", time.Since(start).Round(time.Millisecond))
			return vmhost.StopResult{StoppedBy: by}, nil
		}
		if mode != vmhost.ModeAuto {
			c.stopFailed()
			if err != nil {
				return vmhost.StopResult{}, fmt.Errorf("stop mode %s: %w", mode, err)
			}
			return vmhost.StopResult{}, vmhost.WithCode(vmhost.CodeTimeout, fmt.Errorf("stop mode %s: the VM did not go down within %s (try mode quit or kill)", mode, timeout))
		}
	}
	c.stopFailed()
	return vmhost.StopResult{}, fmt.Errorf("stop: qemu (pid %d) still runs %s after SIGKILL; it may be stuck in the kernel (check its state in /proc/%d/status)", c.PID(), time.Since(start).Round(time.Millisecond), c.PID())
}

// step is a phase with the time it must have brought the VM down by.
type step struct {
	phase phase
	until time.Time
}

// plan lays the phases of mode out within timeout, SIGKILL included. In
// auto mode the agent gets up to 40 % of the time, ACPI runs until quit's
// share (20 %, at most 5 s) and SIGKILL's (killShare) are left, quit until
// SIGKILL's, and SIGKILL until the end.
func (c *Controller) plan(mode string, start time.Time, timeout time.Duration) []step {
	end := start.Add(timeout)
	agent := phase{vmhost.ModeAgent, func(ctx context.Context) error { return c.agent.Shutdown(ctx) }}
	acpi := phase{vmhost.ModeACPI, func(ctx context.Context) error { return c.qmpCommand(ctx, "system_powerdown") }}
	quit := phase{vmhost.ModeQuit, func(ctx context.Context) error { return c.qmpCommand(ctx, "quit") }}
	kill := phase{vmhost.ModeKill, func(context.Context) error { c.kill(); return nil }}
	switch mode {
	case vmhost.ModeAgent:
		return []step{{agent, end}}
	case vmhost.ModeACPI:
		return []step{{acpi, end}}
	case vmhost.ModeQuit:
		return []step{{quit, end}}
	case vmhost.ModeKill:
		return []step{{kill, end}}
	}
	quitShare := min(timeout/5, 5*time.Second)
	killAt := end.Add(-killShare(timeout))
	var steps []step
	if c.agent != nil && c.agent.Responsive() {
		steps = append(steps, step{agent, start.Add(timeout * 2 / 5)})
	} else {
		c.log.Info("stop phase skipped", "phase", vmhost.ModeAgent, "reason", "no responsive guest agent")
	}
	return append(steps,
		step{acpi, killAt.Add(-quitShare)},
		step{quit, killAt},
		step{kill, end},
	)
}

// runPhase starts p and waits until the VM exits or until. It returns the
// phase name when the VM went down.
func (c *Controller) runPhase(ctx context.Context, p phase, until time.Time) (string, error) {
	t0 := time.Now()
	pctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	c.setPhase(p.name)
	err := p.begin(pctx)
	if err != nil && !c.isExited() {
		c.log.Warn("stop phase failed", "phase", p.name, "took", time.Since(t0).Round(time.Millisecond), "err", err)
		return "", err
	}
	select {
	case <-c.exited:
		c.log.Info("stop phase brought the VM down", "phase", p.name, "took", time.Since(t0).Round(time.Millisecond))
		return c.stoppedByPhase(), nil
	case <-pctx.Done():
		c.log.Warn("stop phase timed out", "phase", p.name, "took", time.Since(t0).Round(time.Millisecond))
		return "", nil
	}
}

// ForceStop brings the VM down at once: QMP quit, then SIGKILL.
func (c *Controller) ForceStop(ctx context.Context) error {
	_, err := c.ForceStopResult(ctx)
	return err
}

// ForceStopResult is ForceStop that also says whether quit or kill did it.
func (c *Controller) ForceStopResult(ctx context.Context) (vmhost.StopResult, error) {
	if c.isExited() {
		return vmhost.StopResult{StoppedBy: c.stoppedByPhase()}, nil
	}
	c.setState(vmhost.StateStopping)
	t0 := time.Now()
	qctx, cancel := context.WithTimeout(ctx, forceQuitWait)
	defer cancel()
	c.setPhase(vmhost.ModeQuit)
	if err := c.qmpCommand(qctx, "quit"); err != nil {
		c.log.Warn("force stop: quit failed", "err", err)
	}
	select {
	case <-c.exited:
		c.log.Info("force stop: quit brought the VM down", "took", time.Since(t0).Round(time.Millisecond))
		return vmhost.StopResult{StoppedBy: c.stoppedByPhase()}, nil
	case <-qctx.Done():
	}
	c.setPhase(vmhost.ModeKill)
	c.kill()
	select {
	case <-c.exited:
		c.log.Info("force stop: SIGKILL brought the VM down", "took", time.Since(t0).Round(time.Millisecond))
		return vmhost.StopResult{StoppedBy: c.stoppedByPhase()}, nil
	case <-ctx.Done():
		return vmhost.StopResult{}, fmt.Errorf("force stop: qemu (pid %d) not reaped after SIGKILL: %w", c.PID(), ctx.Err())
	}
}

// qmpCommand runs a command that returns nothing. QEMU may close the
// connection before answering quit; once it has exited that is success.
func (c *Controller) qmpCommand(ctx context.Context, command string) error {
	c.mu.Lock()
	mon := c.mon
	c.mu.Unlock()
	if mon == nil {
		return fmt.Errorf("QMP %s: monitor not connected", command)
	}
	_, err := mon.run(ctx, command)
	return err
}

func (c *Controller) isExited() bool {
	select {
	case <-c.exited:
		return true
	default:
		return false
	}
}

func (c *Controller) setState(s string) {
	c.mu.Lock()
	c.state = s
	c.mu.Unlock()
}

// stopFailed undoes the stopping state of a stop that left the VM running.
func (c *Controller) stopFailed() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.phase = ""
	if c.state == vmhost.StateStopping {
		c.state = vmhost.StateRunning
	}
}

// setPhase records the stop phase in progress. If QEMU exits now, this
// phase brought it down.
func (c *Controller) setPhase(name string) {
	c.mu.Lock()
	c.phase = name
	c.mu.Unlock()
}

func (c *Controller) stoppedByPhase() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stoppedBy
}

package applevirt

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mbvm/mb/vmhost"
)

// killWait bounds the wait for the VM to be gone after a hard Stop.
const killWait = 30 * time.Second

// phase is one way of bringing the VM down.
type phase struct {
	name  string
	begin func(ctx context.Context) error
}

// step is a phase with the time it must have brought the VM down by.
type step struct {
	phase phase
	until time.Time
}

// Stop brings the VM down with every phase in order (agent, acpi, kill)
// within timeout. Stopping a stopped VM returns nil.
func (c *Controller) Stop(ctx context.Context, timeout time.Duration) error {
	_, err := c.StopMode(ctx, timeout, vmhost.ModeAuto)
	return err
}

// StopMode stops the VM with one phase or all of them within timeout, and
// says which phase brought it down: "agent" (the guest agent's shutdown),
// "acpi" (the framework's stop request, delivered to the guest as a power
// button press) or "kill" (the framework's immediate stop). A single phase
// that does not bring the VM down within timeout is an error and leaves the
// VM running.
func (c *Controller) StopMode(ctx context.Context, timeout time.Duration, mode string) (vmhost.StopResult, error) {
	if mode == "" {
		mode = vmhost.ModeAuto
	}
	if timeout <= 0 {
		timeout = vmhost.DefaultStopTimeout
	}
	switch mode {
	case vmhost.ModeAuto, vmhost.ModeACPI, vmhost.ModeKill:
	case vmhost.ModeAgent:
		if c.currentAgent() == nil {
			return vmhost.StopResult{}, errors.New("stop mode agent: no guest agent is connected to this VM (use mode acpi or kill)")
		}
	default:
		return vmhost.StopResult{}, fmt.Errorf("unknown stop mode %q for the applevirt backend: accepted: auto, agent, acpi, kill", mode)
	}
	c.stopMu.Lock()
	defer c.stopMu.Unlock()
	if c.isExited() {
		return vmhost.StopResult{StoppedBy: c.StoppedBy()}, nil
	}
	c.setState(vmhost.StateStopping)
	start := time.Now()
	for _, st := range c.plan(mode, start, timeout) {
		pctx := ctx
		switch {
		case st.phase.name == vmhost.ModeKill:
			// The hard stop is what guarantees the VM is down, so it runs
			// even when the caller's context has ended.
			pctx = context.WithoutCancel(ctx)
		case ctx.Err() != nil && mode == vmhost.ModeAuto:
			continue
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
			return vmhost.StopResult{}, fmt.Errorf("stop mode %s: the VM did not go down within %s (try mode kill)", mode, timeout)
		}
	}
	c.stopFailed()
	return vmhost.StopResult{}, fmt.Errorf("stop: the VM still runs %s after the framework's hard stop; vmhost holds it, so stopping vmhost ends it", time.Since(start).Round(time.Millisecond))
}

// plan lays the phases of mode out within timeout. In auto mode the agent
// gets up to 40 % of the time, the stop request runs until the end, and
// the hard stop comes last.
func (c *Controller) plan(mode string, start time.Time, timeout time.Duration) []step {
	end := start.Add(timeout)
	agent := phase{vmhost.ModeAgent, func(ctx context.Context) error {
		a := c.currentAgent()
		if a == nil {
			return errNoAgent
		}
		return a.Shutdown(ctx)
	}}
	acpi := phase{vmhost.ModeACPI, func(context.Context) error { return c.m.RequestStop() }}
	kill := phase{vmhost.ModeKill, func(context.Context) error { return c.m.Stop() }}
	switch mode {
	case vmhost.ModeAgent:
		return []step{{agent, end}}
	case vmhost.ModeACPI:
		return []step{{acpi, end}}
	case vmhost.ModeKill:
		return []step{{kill, start.Add(killWait)}}
	}
	var steps []step
	if a := c.currentAgent(); a != nil && a.Responsive() {
		steps = append(steps, step{agent, start.Add(timeout * 2 / 5)})
	} else {
		c.log.Info("stop phase skipped", "phase", vmhost.ModeAgent, "reason", "no responsive guest agent")
	}
	return append(steps, step{acpi, end}, step{kill, end.Add(killWait)})
}

// runPhase starts p and waits until the VM is gone or until. It returns the
// phase that brought the VM down, or "".
func (c *Controller) runPhase(ctx context.Context, p phase, until time.Time) (string, error) {
	t0 := time.Now()
	pctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	c.setPhase(p.name)
	if err := p.begin(pctx); err != nil && !c.isExited() {
		c.log.Warn("stop phase failed", "phase", p.name, "took", time.Since(t0).Round(time.Millisecond), "err", err)
		return "", err
	}
	select {
	case <-c.exited:
		c.log.Info("stop phase brought the VM down", "phase", p.name, "took", time.Since(t0).Round(time.Millisecond))
		return c.StoppedBy(), nil
	case <-pctx.Done():
		c.log.Warn("stop phase timed out", "phase", p.name, "took", time.Since(t0).Round(time.Millisecond))
		return "", nil
	}
}

// ForceStop ends the VM at once with the framework's hard stop.
func (c *Controller) ForceStop(ctx context.Context) error {
	_, err := c.ForceStopResult(ctx)
	return err
}

// ForceStopResult is ForceStop that also reports the phase ("kill").
func (c *Controller) ForceStopResult(ctx context.Context) (vmhost.StopResult, error) {
	if c.isExited() {
		return vmhost.StopResult{StoppedBy: c.StoppedBy()}, nil
	}
	c.setState(vmhost.StateStopping)
	c.setPhase(vmhost.ModeKill)
	if err := c.m.Stop(); err != nil && !c.isExited() {
		c.log.Warn("force stop: hard stop failed", "err", err)
	}
	select {
	case <-c.exited:
		return vmhost.StopResult{StoppedBy: c.StoppedBy()}, nil
	case <-ctx.Done():
		return vmhost.StopResult{}, fmt.Errorf("force stop: the VM is not gone after the framework's hard stop: %w", ctx.Err())
	}
}

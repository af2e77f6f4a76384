// Package fake is a VMController that simulates a VM without a hypervisor.
// It starts, runs, stops after a configurable delay and can be told to crash
// or to power itself off. Unit tests and scale benchmarks use it; it is
// never proof that a feature works with a real VM.
package fake

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mbvm/mb/vmhost"
)

// Options configure a fake VM.
type Options struct {
	Name    string
	SSHPort int
	// StartDelay is how long the VM stays "starting".
	StartDelay time.Duration
	// StopDelay is how long a graceful stop takes. A stop whose timeout is
	// shorter ends with a kill (mode auto) or fails (mode graceful).
	StopDelay time.Duration
	// Details are reported by Describe, merged with the fake's own.
	Details map[string]any
}

// Controller is a simulated VM. It is safe for concurrent use.
type Controller struct {
	opts    Options
	started time.Time

	mu        sync.Mutex
	state     string
	stoppedBy string
	exitErr   error
	done      chan struct{}
	stopping  chan struct{} // closed when a graceful stop finishes
}

// New starts a fake VM.
func New(opts Options) *Controller {
	c := &Controller{opts: opts, started: time.Now(), state: vmhost.StateRunning, done: make(chan struct{})}
	if opts.StartDelay > 0 {
		c.state = vmhost.StateStarting
		time.AfterFunc(opts.StartDelay, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.state == vmhost.StateStarting {
				c.state = vmhost.StateRunning
			}
		})
	}
	return c
}

// State implements vmhost.VMController.
func (c *Controller) State() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// SSHPort implements vmhost.VMController.
func (c *Controller) SSHPort() int { return c.opts.SSHPort }

// Backend implements vmhost.VMController.
func (c *Controller) Backend() string { return "fake" }

// Wait implements vmhost.VMController.
func (c *Controller) Wait() error {
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exitErr
}

// StoppedBy says how the VM went down ("" while it runs).
func (c *Controller) StoppedBy() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stoppedBy
}

// Describe implements vmhost.Describer.
func (c *Controller) Describe() vmhost.Description {
	d := map[string]any{"stop_delay_ms": c.opts.StopDelay.Milliseconds()}
	for k, v := range c.opts.Details {
		d[k] = v
	}
	return vmhost.Description{Name: c.opts.Name, StartedAt: c.started, Details: d}
}

// exit ends the VM; c.mu must be held. Only the first exit counts.
func (c *Controller) exit(state, stoppedBy string, err error) bool {
	select {
	case <-c.done:
		return false
	default:
	}
	c.state, c.stoppedBy, c.exitErr = state, stoppedBy, err
	close(c.done)
	return true
}

// Crash makes the VM fail as if its hypervisor died.
func (c *Controller) Crash(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.exit(vmhost.StateError, "", fmt.Errorf("%w: %s", ErrCrashed, reason))
}

// PowerOff makes the guest power itself off: a clean stop.
func (c *Controller) PowerOff() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.exit(vmhost.StateStopped, "guest", nil)
}

// Stop implements vmhost.VMController.
func (c *Controller) Stop(ctx context.Context, timeout time.Duration) error {
	_, err := c.StopMode(ctx, timeout, vmhost.ModeAuto)
	return err
}

// StopMode implements vmhost.ModeStopper with modes auto, graceful and kill.
// It returns within timeout (and by ctx's deadline): in mode auto a
// graceful stop that takes longer is cut short by the kill, which is
// instant here.
func (c *Controller) StopMode(ctx context.Context, timeout time.Duration, mode string) (vmhost.StopResult, error) {
	switch mode {
	case "", vmhost.ModeAuto, vmhost.ModeGraceful, vmhost.ModeKill:
	default:
		return vmhost.StopResult{}, vmhost.WithCode(vmhost.CodeNotAvailable, fmt.Errorf("unknown stop mode %q for the fake backend: accepted modes are auto, graceful, kill", mode))
	}
	c.mu.Lock()
	select {
	case <-c.done:
		by := c.stoppedBy
		c.mu.Unlock()
		return vmhost.StopResult{StoppedBy: by}, nil
	default:
	}
	if mode == vmhost.ModeKill {
		c.exit(vmhost.StateStopped, vmhost.ModeKill, nil)
		c.mu.Unlock()
		return vmhost.StopResult{StoppedBy: vmhost.ModeKill}, nil
	}
	c.state = vmhost.StateStopping
	c.mu.Unlock()

	graceful := time.NewTimer(c.opts.StopDelay)
	defer graceful.Stop()
	expire := time.NewTimer(timeout)
	defer expire.Stop()
	select {
	case <-graceful.C:
		c.mu.Lock()
		c.exit(vmhost.StateStopped, vmhost.ModeGraceful, nil)
		by := c.stoppedBy
		c.mu.Unlock()
		return vmhost.StopResult{StoppedBy: by}, nil
	case <-c.done:
		return vmhost.StopResult{StoppedBy: c.StoppedBy()}, nil
	case <-expire.C:
	case <-ctx.Done():
		if mode != vmhost.ModeGraceful {
			break // auto: the kill phase ends every stop, in time
		}
		c.mu.Lock()
		if c.state == vmhost.StateStopping {
			c.state = vmhost.StateRunning
		}
		c.mu.Unlock()
		return vmhost.StopResult{}, vmhost.WithCode(vmhost.CodeTimeout, fmt.Errorf("stop cancelled: %w", ctx.Err()))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if mode == vmhost.ModeGraceful {
		if c.state == vmhost.StateStopping {
			c.state = vmhost.StateRunning
		}
		return vmhost.StopResult{}, vmhost.WithCode(vmhost.CodeTimeout, fmt.Errorf("fake VM did not stop gracefully within %s (use mode auto or kill)", timeout))
	}
	c.exit(vmhost.StateStopped, vmhost.ModeKill, nil)
	return vmhost.StopResult{StoppedBy: c.stoppedBy}, nil
}

// ForceStop implements vmhost.VMController.
func (c *Controller) ForceStop(ctx context.Context) error {
	_, err := c.ForceStopResult(ctx)
	return err
}

// ForceStopResult implements vmhost.ForceStopReporter.
func (c *Controller) ForceStopResult(ctx context.Context) (vmhost.StopResult, error) {
	if err := ctx.Err(); err != nil {
		return vmhost.StopResult{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.exit(vmhost.StateStopped, vmhost.ModeKill, nil)
	return vmhost.StopResult{StoppedBy: c.stoppedBy}, nil
}

// ErrCrashed is wrapped by Wait's error after Crash.
var ErrCrashed = errors.New("fake VM crashed")

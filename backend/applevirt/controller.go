package applevirt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/mbvm/mb/vmhost"
)

// Controller runs one VM in this process through the framework. It
// implements vmhost.VMController, vmhost.ModeStopper,
// vmhost.ForceStopReporter, vmhost.StoppedByReporter and vmhost.Describer,
// and with a guest agent vmhost.AgentReporter, vmhost.Executor and
// vmhost.MetricsReporter. All methods are safe for concurrent use.
type Controller struct {
	log       *slog.Logger
	cfg       *Config
	m         machine
	startedAt time.Time
	// fwd is the host side of SSH and the forwards; nil before Start
	// binds it.
	fwd *forwarder
	// cancel ends the helpers (forwards, agent) once the VM is gone.
	cancel context.CancelFunc
	ctx    context.Context

	// stopMu serialises stops; ForceStop does not wait for it.
	stopMu sync.Mutex

	mu    sync.Mutex
	state string
	// agent is the guest agent client, nil without one.
	agent guestAgent
	// phase is the stop phase in progress; when the VM goes down it
	// becomes stoppedBy, so stoppedBy is set before anyone sees the exit.
	phase     string
	stoppedBy string

	exited  chan struct{} // closed once the VM is gone and exitErr is set
	exitErr error
}

var (
	_ vmhost.VMController      = (*Controller)(nil)
	_ vmhost.ModeStopper       = (*Controller)(nil)
	_ vmhost.ForceStopReporter = (*Controller)(nil)
	_ vmhost.StoppedByReporter = (*Controller)(nil)
	_ vmhost.Describer         = (*Controller)(nil)
)

// newController wraps a machine that is not started yet and starts the one
// goroutine that reads its state changes.
func newController(cfg *Config, m machine, log *slog.Logger) *Controller {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Controller{
		log:    log,
		cfg:    cfg,
		m:      m,
		ctx:    ctx,
		cancel: cancel,
		state:  vmhost.StateStarting,
		exited: make(chan struct{}),
	}
	go c.watch()
	return c
}

// Backend returns "applevirt".
func (c *Controller) Backend() string { return "applevirt" }

// SSHPort is the host port on 127.0.0.1 relayed to the guest's port 22.
func (c *Controller) SSHPort() int {
	if c.fwd == nil {
		return 0
	}
	return c.fwd.sshPort
}

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
	return c.state
}

// Wait blocks until the VM is gone. It returns nil for a clean stop (a
// requested stop, or a guest that powered itself off) and an error when the
// framework reported the VM in its error state.
func (c *Controller) Wait() error {
	<-c.exited
	return c.exitErr
}

// watch reads the machine's state changes, the only reader of that channel,
// until the VM is gone.
func (c *Controller) watch() {
	var last machineState = -1
	for s := range c.m.States() {
		last = s
		c.log.Debug("vm state", "state", s)
		c.mu.Lock()
		switch s {
		case machineRunning:
			if c.state == vmhost.StateStarting {
				c.state = vmhost.StateRunning
			}
		case machineStopping:
			c.state = vmhost.StateStopping
		}
		c.mu.Unlock()
		if s.terminal() {
			break
		}
	}
	c.finish(last)
}

// finish records how the VM ended and releases everything.
func (c *Controller) finish(last machineState) {
	c.cancel()
	if c.fwd != nil {
		c.fwd.close()
	}
	c.mu.Lock()
	c.stoppedBy = c.phase
	if c.stoppedBy == "" && last == machineStopped {
		c.stoppedBy = "guest"
	}
	a := c.agent
	c.mu.Unlock()
	if a != nil {
		a.Close()
	}
	switch last {
	case machineStopped:
		c.log.Info("vm stopped", "stopped_by", c.stoppedBy)
	case machineError:
		c.exitErr = fmt.Errorf("the Virtualization framework stopped the VM with an error; see the end of %s", c.cfg.SerialLog)
	default:
		c.exitErr = fmt.Errorf("the Virtualization framework stopped reporting the VM's state (last: %s)", last)
	}
	if c.exitErr != nil {
		c.log.Error("vm ended", "err", c.exitErr)
	}
	close(c.exited)
}

// start boots the machine and starts the forwards and the agent.
func (c *Controller) start(ctx context.Context) error {
	c.startedAt = time.Now()
	if err := c.m.Start(ctx); err != nil {
		return fmt.Errorf("start VM %s: %w", c.cfg.Name, err)
	}
	if c.fwd != nil {
		c.fwd.serve(c.ctx)
	}
	c.startAgent()
	return nil
}

// StoppedBy is the stop phase that brought the VM down ("agent", "acpi",
// "kill"), "guest" when the guest powered off unasked, or "" while it runs.
func (c *Controller) StoppedBy() string {
	select {
	case <-c.exited:
	default:
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stoppedBy
}

// Describe reports the VM's configuration for the info method.
func (c *Controller) Describe() vmhost.Description {
	d := map[string]any{
		"cpus":             c.cfg.CPUs,
		"memory_mib":       c.cfg.MemoryBytes >> 20,
		"boot":             c.cfg.Boot.Kind,
		"mac":              c.cfg.MAC.String(),
		"serial_log":       c.cfg.SerialLog,
		"ssh_port":         c.SSHPort(),
		"agent_vsock_port": c.cfg.AgentPort,
		"relay_vsock_port": c.cfg.RelayPort,
	}
	if c.cfg.Boot.Kind == BootLinux {
		d["kernel"] = c.cfg.Boot.Kernel
		d["initrd"] = c.cfg.Boot.Initrd
		d["cmdline"] = c.cfg.Boot.Cmdline
	} else {
		d["efi_variable_store"] = c.cfg.Boot.VariableStore
	}
	if len(c.cfg.Disks) > 0 {
		d["disk"] = c.cfg.Disks[0].Path
	}
	if len(c.cfg.Forwards) > 0 {
		fw := make([]string, len(c.cfg.Forwards))
		for i, f := range c.cfg.Forwards {
			fw[i] = f.String()
		}
		d["forwards"] = fw
	}
	if len(c.cfg.Shares) > 0 {
		sh := make([]string, len(c.cfg.Shares))
		for i, s := range c.cfg.Shares {
			sh[i] = s.Tag + "=" + s.HostPath
		}
		d["shares"] = sh
	}
	return vmhost.Description{Name: c.cfg.Name, StartedAt: c.startedAt, Details: d}
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

func (c *Controller) setPhase(name string) {
	c.mu.Lock()
	c.phase = name
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

var errNoAgent = errors.New("this VM has no guest agent connection")

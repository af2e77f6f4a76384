package qemu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/vm/spec"
	"github.com/mbvm/mb/vmhost"
)

// Options configures Start.
type Options struct {
	// Dir is the VM directory: sockets, serial.log and qemu.pid go here.
	Dir string
	// Spec is the VM's configuration; Start applies its defaults to a copy.
	Spec *spec.Spec
	// Home is $MB_HOME, where images are looked up; empty means layout.Dir().
	Home string
	// Logger receives the backend's logs; nil discards them.
	Logger *slog.Logger
	// QEMUBinary overrides the QEMU binary: a name looked up in PATH or a
	// path. Empty picks qemu-system-<host architecture>.
	QEMUBinary string

	// pickPort overrides how an automatic SSH port is chosen (tests).
	pickPort func() (int, error)
}

const (
	// qmpWait bounds how long QEMU may take to open its QMP socket.
	qmpWait = 60 * time.Second
	// maxPortAttempts is how often an automatic SSH port is tried.
	maxPortAttempts = 5
	// hostFwdFailure is what QEMU prints when a forward's port is taken.
	hostFwdFailure = "Could not set up host forwarding rule"
)

// errHostFwd marks a start that failed because a forwarded port was taken.
var errHostFwd = errors.New("a forwarded host port is already in use")

// Start validates opts, builds the QEMU command line, starts QEMU as a child
// that dies with this process, and connects QMP. It returns once QEMU runs
// (state starting or running); the guest boots on after that. ctx bounds the
// start only, not the VM's life.
func Start(ctx context.Context, opts Options) (*Controller, error) {
	if opts.Dir == "" {
		return nil, errors.New("qemu: Options.Dir is empty: give the VM directory")
	}
	if opts.Spec == nil {
		return nil, errors.New("qemu: Options.Spec is nil: give the VM spec")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("VM directory %s: %w", opts.Dir, err)
	}
	mbHome := opts.Home
	if mbHome == "" {
		if mbHome, err = layout.Dir(); err != nil {
			return nil, err
		}
	}
	s := *opts.Spec
	s.SetDefaults()
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("VM spec: %w", err)
	}
	a, err := hostArch(runtime.GOARCH)
	if err != nil {
		return nil, err
	}
	// A QEMU that outlived an earlier run holds the disk and the ports.
	if err := stopLeftover(ctx, log, dir); err != nil {
		return nil, err
	}
	if err := layout.Ensure(dir); err != nil {
		return nil, err
	}
	if err := refuseLinks(dir); err != nil {
		return nil, err
	}
	cfg, err := resolveBoot(ctx, dir, mbHome, &s, a)
	if err != nil {
		return nil, err
	}
	cfg.AgentInterval = time.Duration(s.AgentInterval)
	accel, err := chooseAccel(s.Accel, os.Getenv(AccelEnv), realHost())
	if err != nil {
		return nil, err
	}
	cfg.Accel = accel.Accel
	log.Info("accelerator chosen", "accel", accel.Accel, "reason", accel.Reason)

	name := opts.QEMUBinary
	if name == "" {
		name = s.QEMUBinary // the spec's choice for this VM
	}
	if name == "" {
		name = binaryName(a)
	}
	bin, err := findBinary(ctx, name, a, newVersionCache(mbHome))
	if err != nil {
		return nil, err
	}
	if err := planWarm(dir, cfg, machineOf(cfg, bin)); err != nil { // snapshot.go
		return nil, err
	}
	// From here on the guest RAM (a memfd) is the Controller's, or is let
	// go on a failed start.
	started := false
	defer func() {
		if !started {
			cfg.Warm.closeRAM()
		}
	}()
	if err := checkExplicitPorts(&s); err != nil {
		return nil, err
	}
	if err := boundLog(cfg.path(serialLogName)); err != nil {
		return nil, err
	}

	pick := opts.pickPort
	if pick == nil {
		pick = freePort
	}
	for attempt := 1; ; attempt++ {
		if s.SSHPort == 0 {
			if cfg.SSHPort, err = autoSSHPort(log, cfg.Dir, attempt, pick); err != nil {
				return nil, err
			}
		}
		stopShares, err := startShares(ctx, log, cfg)
		if err != nil {
			return nil, err
		}
		c, err := launch(ctx, log, cfg, accel, bin)
		if err != nil {
			stopShares()
		}
		if err == nil {
			if s.SSHPort == 0 {
				rememberSSHPort(log, cfg.Dir, cfg.SSHPort)
			}
			started = true
			return c, nil
		}
		if s.SSHPort == 0 && errors.Is(err, errHostFwd) && attempt < maxPortAttempts {
			log.Warn("automatic SSH port was taken, trying another", "port", cfg.SSHPort, "attempt", attempt)
			continue
		}
		return nil, err
	}
}

// checkExplicitPorts refuses ports the spec names that are already taken;
// they are never replaced silently.
func checkExplicitPorts(s *spec.Spec) error {
	if s.SSHPort != 0 {
		if err := checkPortFree("ssh_port", "tcp", s.SSHPort); err != nil {
			return err
		}
	}
	for _, f := range s.Forwards {
		if err := checkPortFree("forward host port", f.Proto, f.Host); err != nil {
			return err
		}
	}
	return nil
}

// launch starts one QEMU process for cfg and connects its monitor.
func launch(ctx context.Context, log *slog.Logger, cfg *bootConfig, accel accelChoice, bin qemuBinary) (*Controller, error) {
	for _, n := range []string{qmpSockName, consoleSockName, agentSockName, pidFileName} {
		if err := os.Remove(cfg.path(n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale %s: %w", cfg.path(n), err)
		}
	}
	if err := cfg.Warm.newRAM(cfg.MemoryMiB); err != nil {
		return nil, err
	}
	args := buildArgs(cfg)
	cmd := exec.Command(bin.Path, args...)
	cmd.Dir = cfg.Dir
	if cfg.Warm.RAM != nil {
		cmd.ExtraFiles = []*os.File{cfg.Warm.RAM} // fd 3: ramFDPath
	}
	stderr := newTailWriter(log, 20)
	cmd.Stdout = stderr
	cmd.Stderr = stderr
	log.Info("starting qemu", "binary", bin.Path, "args", strings.Join(args, " "))
	done, err := startProcess(cmd)
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithCancel(context.Background())
	c := &Controller{
		log:       log,
		cfg:       cfg,
		accel:     accel,
		bin:       bin,
		args:      args,
		cmd:       cmd,
		startedAt: time.Now(),
		stderr:    stderr,
		cancel:    cancel,
		state:     vmhost.StateStarting,
		exited:    make(chan struct{}),
	}
	go c.reap(done)

	if err := c.connect(ctx); err != nil {
		c.kill()
		<-c.exited
		if stderr.contains(hostFwdFailure) {
			return nil, fmt.Errorf("qemu could not forward a port (SSH port %d): %s: %w", cfg.SSHPort, stderr.String(), errHostFwd)
		}
		return nil, err
	}
	log.Info("qemu running", "pid", cmd.Process.Pid, "qemu_version", bin.Version, "ssh_port", cfg.SSHPort)
	go keepLogBounded(hctx, cfg.path(serialLogName), serialLogCheckEvery, log)
	c.startAgent(hctx)
	if cfg.Warm.Restore != nil {
		if err := c.restore(ctx, hctx); err != nil {
			c.kill()
			<-c.exited
			return nil, err
		}
	}
	return c, nil
}

// connect waits for QMP to come up, connects it and reads the run state.
func (c *Controller) connect(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, qmpWait)
	defer cancel()
	path := c.cfg.path(qmpSockName)
	var lastErr error
	for {
		select {
		case <-c.exited:
			if c.exitErr == nil {
				return fmt.Errorf("qemu exited during start: %s", c.stderr.String())
			}
			return fmt.Errorf("qemu failed to start: %w", c.exitErr)
		case <-ctx.Done():
			return fmt.Errorf("qemu did not open its QMP socket %s within %s (last error: %v): %w", path, qmpWait, lastErr, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if _, err := os.Stat(path); err != nil {
			lastErr = err
			continue
		}
		mon, err := dialMonitor(ctx, path, qmpCallTimeout, c.onEvent)
		if errors.Is(err, errQMPDial) {
			lastErr = err
			continue
		}
		if err != nil {
			// QMP takes one client at a time, so a wedged handshake
			// would block every retry: give up.
			return fmt.Errorf("qemu started but its monitor fails: %w", err)
		}
		c.mu.Lock()
		c.mon = mon
		c.mu.Unlock()
		st, err := mon.queryStatus(ctx)
		if err != nil {
			return fmt.Errorf("qemu started but does not answer QMP: %w", err)
		}
		c.mu.Lock()
		if st == "running" && c.state == vmhost.StateStarting {
			c.state = vmhost.StateRunning
		}
		c.mu.Unlock()
		return nil
	}
}

// kill sends SIGKILL to QEMU as a requested stop.
func (c *Controller) kill() {
	c.mu.Lock()
	c.killed = true
	c.mu.Unlock()
	if err := c.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		c.log.Warn("kill qemu", "pid", c.cmd.Process.Pid, "err", err)
	}
}

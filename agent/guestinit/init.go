//go:build linux

package guestinit

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"golang.org/x/sys/unix"
)

// initProc is the state of PID 1.
type initProc struct {
	opts    Options
	log     *slog.Logger
	console *os.File
	// consoleOK is true once /dev/console is open.
	consoleOK bool

	agentPID     int
	agentEnv     []string // extra environment of the agent child
	agentStarted time.Time
	backoff      time.Duration
	restart      *time.Timer
	shuttingDown bool

	// iface is the interface the boot configured.
	iface string
	// reporters are the register/heartbeat children (mb.register=,
	// mb.heartbeat=); reporterDue delivers those due for a restart.
	reporters   []*reporterProc
	reporterDue chan *reporterProc
}

// Run is PID 1: it prepares the guest, starts the agent child, prints the
// ready line and then supervises, reaps and waits for a shutdown request.
// It never returns: a failing step is logged and the boot goes on, since
// PID 1 exiting would panic the kernel.
func Run(opts Options) {
	if opts.Busybox == "" {
		opts.Busybox = "/bin/busybox"
	}
	if opts.DHCPScript == "" {
		opts.DHCPScript = "/etc/udhcpc.script"
	}
	if opts.ModuleOrder == "" {
		opts.ModuleOrder = "/etc/modules.order"
	}
	// Catch the signals first: one sent during boot is handled after it.
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, unix.SIGCHLD, unix.SIGTERM, unix.SIGINT, unix.SIGUSR1, unix.SIGUSR2)

	in := &initProc{opts: opts, console: os.Stdout}
	mountErr := mountAll()
	in.reopenConsole()
	in.log = opts.Logger
	if in.log == nil {
		in.log = slog.New(slog.NewTextHandler(consoleWriter{in}, &slog.HandlerOptions{
			Level:       slog.LevelInfo,
			ReplaceAttr: dropTime,
		})).With("component", "mb-agent-init")
	}
	if mountErr != nil {
		in.log.Error("mounting the pseudo filesystems", "err", mountErr)
	}
	cmdline := readCmdline()
	in.boot(cmdline)
	args, env := cmdline.AgentArgs()
	in.opts.AgentArgs = append(in.opts.AgentArgs, args...)
	in.agentEnv = env

	pressed := make(chan struct{}, 1)
	watchPowerButton(context.Background(), in.log, pressed)
	in.startAgent()
	in.startReporters(cmdline.Reporters(in.iface))
	fmt.Fprintln(in.console, ReadyLine)

	switch cmdline.Selftest {
	case "":
	case "poweroff":
		in.stop(PowerOff, "selftest")
	case "panic":
		in.log.Warn("mb.selftest=panic: crashing the kernel on purpose")
		if err := os.WriteFile("/proc/sysrq-trigger", []byte("c"), 0o200); err != nil {
			in.log.Error("trigger a kernel panic", "err", err)
		}
	default:
		in.log.Warn("unknown mb.selftest value, ignored (known: poweroff, panic)", "value", cmdline.Selftest)
	}
	in.loop(sigs, pressed)
}

// boot runs the init steps that happen before the agent starts.
func (in *initProc) boot(cmdline Cmdline) {
	start := time.Now()
	// Ctrl-Alt-Del sends SIGINT to PID 1 (a clean reboot) instead of
	// rebooting at once.
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF); err != nil {
		in.log.Warn("disable Ctrl-Alt-Del reboot", "err", err)
	}
	host := in.setHostname(cmdline.Hostname)
	nmod := 0
	if rel, err := kernelRelease(); err != nil {
		in.log.Error("find the module directory", "err", err)
	} else {
		n, err := loadModules(in.log, "/lib/modules/"+rel, in.opts.ModuleOrder)
		nmod = n
		if err != nil {
			in.log.Error("loading kernel modules", "err", err)
		}
	}
	modsDone := time.Now()
	if !in.consoleOK {
		// A console on a modular driver (console=hvc0 needs
		// virtio_console) exists only now.
		in.reopenConsole()
	}
	nc := netConfig{log: in.log, busybox: in.opts.Busybox, dhcpScript: in.opts.DHCPScript}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	iface, how, err := nc.up(ctx)
	cancel()
	in.iface = iface
	if err != nil {
		in.log.Error("network setup", "iface", iface, "err", err)
	}
	nshares := mountShares(in.log, cmdline.Params[SharesParam]) // shares_linux.go
	in.log.Info("guest initialised", "hostname", host, "modules", nmod, "shares", nshares,
		"modules_took", modsDone.Sub(start).Round(time.Millisecond),
		"iface", iface, "net", how, "took", time.Since(start).Round(time.Millisecond))
}

// loop handles signals, the power button and agent restarts for ever.
func (in *initProc) loop(sigs <-chan os.Signal, pressed <-chan struct{}) {
	for {
		var restart <-chan time.Time
		if in.restart != nil {
			restart = in.restart.C
		}
		select {
		case s := <-sigs:
			switch s {
			case unix.SIGCHLD:
				in.reap()
			case unix.SIGTERM, unix.SIGUSR2:
				sig, _ := s.(unix.Signal)
				in.stop(PowerOff, "signal "+unix.SignalName(sig))
			case unix.SIGINT:
				in.stop(Reboot, "signal SIGINT")
			case unix.SIGUSR1:
				in.stop(Halt, "signal SIGUSR1")
			}
		case <-pressed:
			in.stop(PowerOff, "acpi button")
		case <-restart:
			in.restart = nil
			if !in.shuttingDown {
				in.startAgent()
			}
		case r := <-in.reporterDue:
			if !in.shuttingDown && r.pid == 0 {
				in.startReporter(r)
			}
		}
	}
}

// stop shuts the guest down; it returns only when reboot(2) failed.
func (in *initProc) stop(a Action, reason string) {
	if in.shuttingDown {
		return
	}
	in.shuttingDown = true
	if err := in.shutdown(a, reason); err != nil {
		in.log.Error("shutdown failed; the guest stays up without its agent", "err", err)
	}
}

func readCmdline() Cmdline {
	data, _ := os.ReadFile("/proc/cmdline")
	return ParseCmdline(string(data))
}

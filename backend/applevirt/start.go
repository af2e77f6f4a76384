package applevirt

import (
	"context"
	"log/slog"
	"net"
	"os"
	"runtime"

	"github.com/mbvm/mb/vm/spec"
)

// Options are what Start needs.
type Options struct {
	// Dir is the VM directory; Home is $MB_HOME, where images live.
	Dir, Home string
	Spec      *spec.Spec
	Logger    *slog.Logger
}

// Start builds the VM from the spec, binds its forwarded ports on 127.0.0.1,
// and boots it inside this process. On anything but macOS with cgo it fails
// at once, saying what the backend needs.
func Start(ctx context.Context, o Options) (*Controller, error) {
	if platformErr != nil {
		return nil, platformErr
	}
	if runtime.GOOS == "darwin" {
		if exe, err := os.Executable(); err == nil {
			if err := CheckEntitlement(ctx, exe); err != nil {
				return nil, err
			}
		}
	}
	return start(ctx, o, newMachine)
}

// start is Start with the machine constructor given (tests pass a fake).
func start(ctx context.Context, o Options, newM newMachineFunc) (*Controller, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	cfg, err := BuildConfig(ctx, BuildOptions{Dir: o.Dir, Home: o.Home, Spec: o.Spec, Logger: log})
	if err != nil {
		return nil, err
	}
	return startConfig(ctx, cfg, newM, log, func(mac net.HardwareAddr) (net.IP, error) { return LookupLease(LeasesFile, mac) })
}

// startConfig binds the forwards, creates the machine and boots it.
func startConfig(ctx context.Context, cfg *Config, newM newMachineFunc, log *slog.Logger, lookup func(net.HardwareAddr) (net.IP, error)) (*Controller, error) {
	fwd, err := bindForwards(cfg.SSHPort, cfg.Forwards)
	if err != nil {
		return nil, err
	}
	m, err := newM(cfg)
	if err != nil {
		fwd.close()
		return nil, err
	}
	fwd.log = log.With("component", "forward")
	fwd.dialVsock = m.DialVsock
	fwd.relayPort = cfg.RelayPort
	fwd.mac = cfg.MAC
	fwd.lookup = lookup
	c := newController(cfg, m, log)
	c.fwd = fwd
	if err := c.start(ctx); err != nil {
		fwd.close()
		c.cancel()
		return nil, err
	}
	log.Info("vm started", "backend", "applevirt", "ssh_port", fwd.sshPort, "boot", cfg.Boot.Kind, "mac", cfg.MAC.String())
	return c, nil
}

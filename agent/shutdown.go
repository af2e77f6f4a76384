package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/mbvm/mb/agent/qgaproto"
)

func (s *server) cmdShutdown(ctx context.Context, args json.RawMessage) (any, error) {
	var a qgaproto.ShutdownArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	switch a.Mode {
	case "":
		a.Mode = "powerdown"
	case "powerdown", "reboot", "halt":
	default:
		return nil, genericError("Parameter 'mode' has invalid value %q: use powerdown, reboot or halt", a.Mode)
	}
	s.log.Info("shutdown requested by the host", "mode", a.Mode)
	if err := s.shutdown(ctx, a.Mode); err != nil {
		return nil, genericError("shutdown (%s): %v", a.Mode, err)
	}
	return nil, nil
}

// systemShutdown brings the guest down: as mb's own PID 1 by a signal to it,
// otherwise through the init system.
func (s *server) systemShutdown(ctx context.Context, mode string) error {
	if s.pid1 {
		sig := map[string]syscall.Signal{"powerdown": syscall.SIGTERM, "reboot": syscall.SIGINT, "halt": syscall.SIGUSR1}[mode]
		if err := syscall.Kill(1, sig); err != nil {
			return fmt.Errorf("signal PID 1 with %v: %w", sig, err)
		}
		return nil
	}
	name, args := shutdownCommand(mode, exists)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %w: %s", name, args, err, out)
	}
	return nil
}

// shutdownCommand picks how to ask the init system: systemctl under
// systemd, shutdown(8) where there is one, else busybox-style
// poweroff/reboot/halt.
func shutdownCommand(mode string, exists func(string) bool) (string, []string) {
	if exists("/run/systemd/system") {
		return "systemctl", []string{map[string]string{"powerdown": "poweroff", "reboot": "reboot", "halt": "halt"}[mode]}
	}
	if exists("/sbin/shutdown") || exists("/usr/sbin/shutdown") {
		flag := map[string]string{"powerdown": "-P", "reboot": "-r", "halt": "-H"}[mode]
		return "shutdown", []string{flag, "now"}
	}
	return map[string]string{"powerdown": "poweroff", "reboot": "reboot", "halt": "halt"}[mode], nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

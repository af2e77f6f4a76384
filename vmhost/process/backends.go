package process

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/mbvm/mb/backend/fake"
	"github.com/mbvm/mb/vm/spec"
	"github.com/mbvm/mb/vmhost"
)

// runningVM is a started backend and what the supervisor may do with it
// beyond VMController.
type runningVM struct {
	ctrl  vmhost.VMController
	crash func(reason string) // nil unless the backend can simulate a crash
}

// startBackend starts the VM with the backend the spec names.
func startBackend(ctx context.Context, dir, home string, sp *spec.Spec, log *slog.Logger) (*runningVM, error) {
	switch sp.Backend {
	case "fake":
		opts := fake.Options{Name: sp.Name, SSHPort: sp.SSHPort,
			StartDelay: envDuration("MB_FAKE_START_DELAY"), StopDelay: envDuration("MB_FAKE_STOP_DELAY")}
		c := fake.New(opts)
		var ctrl vmhost.VMController = c
		if p := os.Getenv("MB_FAKE_AGENT_SOCKET"); p != "" {
			// A test serves a guest agent (or a hostile imitation) here.
			ctrl = fake.WithAgent(c, p, sp.AgentInterval.D(), log)
		}
		return &runningVM{ctrl: ctrl, crash: c.Crash}, nil
	case "qemu":
		return startQEMU(ctx, dir, home, sp, log)
	case "applevirt":
		return startAppleVirt(ctx, dir, home, sp, log)
	}
	return nil, fmt.Errorf("unknown backend %q: accepted values: %s", sp.Backend, strings.Join(spec.Backends, ", "))
}

// envDuration reads a duration such as "500ms" from the environment (the
// fake backend's knobs for tests); empty or bad values are zero.
func envDuration(name string) time.Duration {
	d, err := time.ParseDuration(os.Getenv(name))
	if err != nil {
		return 0
	}
	return d
}

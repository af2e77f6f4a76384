package process

import (
	"context"
	"log/slog"

	"github.com/mbvm/mb/backend/applevirt"
	"github.com/mbvm/mb/vm/spec"
)

// startAppleVirt starts the Apple Virtualization backend; off macOS (or
// without cgo) it fails at once, saying what the backend needs.
func startAppleVirt(ctx context.Context, dir, home string, sp *spec.Spec, log *slog.Logger) (*runningVM, error) {
	c, err := applevirt.Start(ctx, applevirt.Options{Dir: dir, Home: home, Spec: sp, Logger: log})
	if err != nil {
		return nil, err
	}
	return &runningVM{ctrl: c}, nil
}

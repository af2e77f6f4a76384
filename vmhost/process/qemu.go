package process

import (
	"context"
	"log/slog"

	"github.com/mbvm/mb/backend/qemu"
	"github.com/mbvm/mb/vm/spec"
)

// startQEMU starts the QEMU backend.
func startQEMU(ctx context.Context, dir, home string, sp *spec.Spec, log *slog.Logger) (*runningVM, error) {
	c, err := qemu.Start(ctx, qemu.Options{Dir: dir, Spec: sp, Home: home, Logger: log})
	if err != nil {
		return nil, err
	}
	return &runningVM{ctrl: c}, nil
}

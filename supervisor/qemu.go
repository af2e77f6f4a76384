package supervisor

import (
	"context"
	"errors"
	"log/slog"

	"github.com/mbvm/mb/spec"
)

// startQEMU starts the QEMU backend.
func startQEMU(ctx context.Context, dir, home string, sp *spec.Spec, log *slog.Logger) (*runningVM, error) {
	return nil, errors.New("the qemu backend is not built yet")
}

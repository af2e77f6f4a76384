package qemu

import (
	"context"
	"log/slog"
	"time"

	"github.com/mbvm/mb/internal/logfile"
)

// serialLogCap is the size over which serial.log is moved to serial.log.1.
const serialLogCap = 4 << 20

// serialLogKeep is how many old serial logs are kept (serial.log.1).
const serialLogKeep = 1

// serialLogCheckEvery is how often a running VM's serial.log is checked.
const serialLogCheckEvery = 30 * time.Second

// boundLog moves the serial log to serial.log.1 once it is over the cap.
// QEMU holds it open in append mode, so it is copied and truncated in
// place; QEMU's next write lands at the start of the emptied file.
func boundLog(path string) error {
	return logfile.RotateIfLarger(path, serialLogCap, serialLogKeep)
}

// keepLogBounded bounds path every interval until ctx is done.
func keepLogBounded(ctx context.Context, path string, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := boundLog(path); err != nil {
				log.Warn("serial log not rotated", "path", path, "err", err)
			}
		}
	}
}

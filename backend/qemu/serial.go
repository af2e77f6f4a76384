package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"
)

// serialLogCap is the size over which serial.log is rotated to serial.log.1.
const serialLogCap = 4 << 20

// serialLogCheckEvery is how often a running VM's serial.log is checked.
const serialLogCheckEvery = 30 * time.Second

// rotateLog moves path to path.1 (replacing it) when path is larger than
// limit. QEMU then creates a fresh log. It runs before QEMU starts.
func rotateLog(path string, limit int64) error {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	if st.Size() <= limit {
		return nil
	}
	if err := os.Rename(path, path+".1"); err != nil {
		return fmt.Errorf("rotate %s: %w", path, err)
	}
	return nil
}

// trimLog bounds a log that QEMU holds open with O_APPEND: it copies the
// log to path.1 and truncates it in place, so QEMU's next write lands at the
// new end. Lines written between the copy and the truncation are lost; that
// is the price of not restarting QEMU.
func trimLog(path string, limit int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	if st.Size() <= limit {
		return nil
	}
	old, err := os.OpenFile(path+".1", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("rotate %s: %w", path, err)
	}
	if _, err := io.Copy(old, f); err != nil {
		old.Close()
		return fmt.Errorf("rotate %s: %w", path, err)
	}
	if err := old.Close(); err != nil {
		return fmt.Errorf("rotate %s: %w", path, err)
	}
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("truncate %s: %w", path, err)
	}
	return nil
}

// keepLogBounded trims path every interval until ctx is done.
func keepLogBounded(ctx context.Context, path string, limit int64, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := trimLog(path, limit); err != nil {
				log.Warn("serial log not trimmed", "path", path, "err", err)
			}
		}
	}
}

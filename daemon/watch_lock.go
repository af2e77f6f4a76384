package daemon

import (
	"context"
	"time"

	"github.com/mbvm/mb/internal/lockfile"
)

// waitForLock polls lockPath until no process holds it. It returns false
// when ctx ended first.
func waitForLock(ctx context.Context, lockPath string) bool {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		held, _, err := lockfile.Probe(lockPath)
		if err == nil && !held {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

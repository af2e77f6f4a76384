//go:build !linux

package daemon

import "context"

// waitForExit blocks until the vmhost holding lockPath exits. Without
// pidfds it watches the lock. It returns false when ctx ended first.
func waitForExit(ctx context.Context, pid int, lockPath string) bool {
	return waitForLock(ctx, lockPath)
}

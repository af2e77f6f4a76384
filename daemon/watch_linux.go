//go:build linux

package daemon

import (
	"context"
	"errors"

	"golang.org/x/sys/unix"
)

// waitForExit blocks until the process pid (not our child) exits, using a
// pidfd, or falls back to watching the vmhost lock. It returns false when
// ctx ended first.
func waitForExit(ctx context.Context, pid int, lockPath string) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return true
	}
	if err != nil {
		return waitForLock(ctx, lockPath)
	}
	defer unix.Close(fd)
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 500)
		if n > 0 {
			return true
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			return waitForLock(ctx, lockPath)
		}
		if ctx.Err() != nil {
			return false
		}
	}
}

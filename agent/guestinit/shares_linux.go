//go:build linux

package guestinit

import (
	"log/slog"
	"os"

	"golang.org/x/sys/unix"
)

// mountShares mounts the virtiofs shares mb.shares lists; a share that
// cannot be mounted is logged and skipped.
func mountShares(log *slog.Logger, param string) int {
	shares, err := ParseShares(param)
	if err != nil {
		log.Error("host folder shares", "err", err)
		return 0
	}
	n := 0
	for _, sh := range shares {
		if err := os.MkdirAll(sh.Path, 0o755); err != nil {
			log.Error("create a share's mount point", "tag", sh.Tag, "path", sh.Path, "err", err)
			continue
		}
		var flags uintptr = unix.MS_NODEV
		if sh.ReadOnly {
			flags |= unix.MS_RDONLY
		}
		if err := unix.Mount(sh.Tag, sh.Path, "virtiofs", flags, ""); err != nil {
			log.Error("mount a host folder share (is the virtiofs module in the image?)", "tag", sh.Tag, "path", sh.Path, "err", err)
			continue
		}
		n++
	}
	return n
}

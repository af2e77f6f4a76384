//go:build linux

package guestinit

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// mount is one filesystem PID 1 mounts at boot.
type mount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

// bootMounts returns the filesystems mounted in order at boot and
// unmounted in reverse order at shutdown.
func bootMounts() []mount {
	return []mount{
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666"},
		{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
		{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
		{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	}
}

// mountAll mounts bootMounts; a filesystem already mounted there is fine.
func mountAll() error {
	var errs []error
	for _, m := range bootMounts() {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			errs = append(errs, fmt.Errorf("create mount point: %w", err))
			continue
		}
		err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data)
		if err != nil && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err))
		}
	}
	// The usual /dev links that devtmpfs does not make.
	for link, target := range map[string]string{
		"/dev/fd":     "/proc/self/fd",
		"/dev/stdin":  "/proc/self/fd/0",
		"/dev/stdout": "/proc/self/fd/1",
		"/dev/stderr": "/proc/self/fd/2",
	} {
		if err := os.Symlink(target, link); err != nil && !errors.Is(err, os.ErrExist) {
			errs = append(errs, fmt.Errorf("link %s: %w", link, err))
		}
	}
	return errors.Join(errs...)
}

// unmountAll unmounts bootMounts in reverse order, lazily where a
// filesystem is still busy (the console stays open on /dev).
func unmountAll() error {
	var errs []error
	mounts := bootMounts()
	for i := len(mounts) - 1; i >= 0; i-- {
		t := mounts[i].target
		if err := unix.Unmount(t, 0); err != nil {
			if err2 := unix.Unmount(t, unix.MNT_DETACH); err2 != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", t, err2))
			}
		}
	}
	return errors.Join(errs...)
}

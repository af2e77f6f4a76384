// Package lockfile holds exclusive, process-lifetime file locks (flock).
// The kernel drops the lock when the holder dies, so a lock can never go
// stale: a free lock means its last holder is gone.
package lockfile

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrLocked is returned by Acquire when another process holds the lock.
var ErrLocked = errors.New("locked by another process")

// Lock is a held lock.
type Lock struct {
	f    *os.File
	path string
}

// HeldError says who holds a lock.
type HeldError struct {
	Path string
	PID  int // 0 when unknown
}

func (e *HeldError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("%s is held by PID %d", e.Path, e.PID)
	}
	return fmt.Sprintf("%s is held by another process", e.Path)
}

// Unwrap makes errors.Is(err, ErrLocked) true.
func (e *HeldError) Unwrap() error { return ErrLocked }

// Acquire takes the exclusive lock on path without waiting, creating the
// file with mode 0600 if needed, and records the caller's PID in it. When
// another process holds it, the error is a *HeldError naming that PID.
func Acquire(path string) (*Lock, error) {
	// O_NOFOLLOW: the lock file's PID is written into it, never through a
	// link someone planted in its place.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := lockExclusive(f); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, &HeldError{Path: path, PID: readPID(path)}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f, path: path}, nil
}

// probeGrace is how long Acquire keeps trying a lock that is busy. A Probe
// holds a shared lock for the instant it takes to test it, and flock(2)
// cannot test a lock without taking it (F_OFD_GETLK does not see flock
// locks), so a free lock can look busy to Acquire while a probe runs; a
// real holder keeps it far longer than this.
const probeGrace = 100 * time.Millisecond

// lockExclusive takes the exclusive lock without blocking for longer than
// probeGrace. It returns EWOULDBLOCK when the lock stayed held.
func lockExclusive(f *os.File) error {
	deadline := time.Now().Add(probeGrace)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(time.Millisecond)
	}
}

// Release drops the lock. The file stays, so the PID in it cannot be
// mistaken for a live holder: only the flock says who holds it.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Path is the lock file's path.
func (l *Lock) Path() string { return l.path }

// Probe reports whether some process holds the lock on path, and the PID
// recorded in it. A missing file is not held. Probe briefly takes and drops
// a shared lock when it is free; Acquire waits out that instant, so a probe
// never makes a concurrent Acquire of a free lock fail.
func Probe(path string) (held bool, pid int, err error) {
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, fmt.Errorf("open lock %s: %w", path, err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return true, readPID(path), nil
		}
		return false, 0, fmt.Errorf("probe lock %s: %w", path, err)
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false, readPID(path), nil
}

func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return pid
}

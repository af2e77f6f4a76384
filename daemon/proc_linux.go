//go:build linux

package daemon

import (
	"errors"
	"fmt"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// procRef is a handle on a process the daemon did not spawn: a pidfd when
// the kernel has pidfd_open (Linux 5.3), else only the PID.
type procRef struct {
	pid int
	mu  sync.Mutex // fd is not closed under a signal
	fd  int        // -1 without a pidfd
	// closed: the process is gone, its PID may be reused.
	closed bool
}

// openProc takes a handle on pid, refusing PIDs that must never be
// signalled.
func openProc(pid int) (*procRef, error) {
	if !signalable(pid) {
		return nil, fmt.Errorf("refusing to take a handle on PID %d", pid)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	switch {
	case errors.Is(err, unix.ESRCH):
		return nil, fmt.Errorf("process %d: %w", pid, err)
	case err != nil:
		fd = -1 // an old kernel: signal by PID
	}
	return &procRef{pid: pid, fd: fd}, nil
}

// signal sends sig to the process.
func (p *procRef) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fd >= 0 {
		return unix.PidfdSendSignal(p.fd, sig, nil, 0)
	}
	if p.closed {
		return fmt.Errorf("process %d is gone", p.pid)
	}
	if !signalable(p.pid) {
		return fmt.Errorf("refusing to signal PID %d", p.pid)
	}
	return syscall.Kill(p.pid, sig)
}

// close releases the handle.
func (p *procRef) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.fd >= 0 {
		unix.Close(p.fd)
		p.fd = -1
	}
}

//go:build !linux

package daemon

import (
	"fmt"
	"syscall"
)

// procRef is a handle on a process the daemon did not spawn; without
// pidfds it is the PID.
type procRef struct{ pid int }

// openProc takes a handle on pid, refusing PIDs that must never be
// signalled.
func openProc(pid int) (*procRef, error) {
	if !signalable(pid) {
		return nil, fmt.Errorf("refusing to take a handle on PID %d", pid)
	}
	return &procRef{pid: pid}, nil
}

// signal sends sig to the process.
func (p *procRef) signal(sig syscall.Signal) error {
	if !signalable(p.pid) {
		return fmt.Errorf("refusing to signal PID %d", p.pid)
	}
	return syscall.Kill(p.pid, sig)
}

// close releases the handle.
func (p *procRef) close() {}

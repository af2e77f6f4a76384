package daemon

import (
	"fmt"
	"os"
	"syscall"
)

// signalable reports whether pid may be signalled: never 0 or a negative
// PID (a process group, 0 being the daemon's own), never init, never the
// daemon itself. A vmhost's PID read from a lock file that its vmhost has
// not written yet is 0.
func signalable(pid int) bool { return pid > 1 && pid != os.Getpid() }

// kill sends SIGKILL to the vmhost of r: through os.Process for a vmhost
// this daemon spawned, through the handle taken at adoption for another;
// both use a pidfd where the kernel has one, so the signal cannot reach a
// process that reused the PID.
func (r *run) kill() error {
	switch {
	case !signalable(r.pid):
		return fmt.Errorf("vmhost PID %d is not known (its lock file names no process), so it was not signalled", r.pid)
	case r.proc != nil:
		return r.proc.Signal(syscall.SIGKILL)
	case r.ref != nil:
		return r.ref.signal(syscall.SIGKILL)
	}
	ref, err := openProc(r.pid)
	if err != nil {
		return err
	}
	defer ref.close()
	return ref.signal(syscall.SIGKILL)
}

//go:build !linux

package guestinit

import (
	"fmt"
	"os"
)

// Run is PID 1: it prepares the guest, starts the agent child, prints the
// ready line and then supervises, reaps and waits for a shutdown request.
// It never returns: a failing step is logged and the boot goes on, since
// PID 1 exiting would panic the kernel.
//
// Outside Linux there is no guest to prepare: Run prints an error to
// stderr and exits with status 1.
func Run(opts Options) {
	fmt.Fprintln(os.Stderr, "mb-agent: mb-agent as PID 1 needs a Linux guest")
	os.Exit(1)
}

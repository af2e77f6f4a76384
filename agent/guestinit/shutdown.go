//go:build linux

package guestinit

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// rebootCmd returns the reboot(2) command that ends the action.
func (a Action) rebootCmd() int {
	switch a {
	case Reboot:
		return unix.LINUX_REBOOT_CMD_RESTART
	case Halt:
		return unix.LINUX_REBOOT_CMD_HALT
	default:
		return unix.LINUX_REBOOT_CMD_POWER_OFF
	}
}

// termGrace is how long processes get between SIGTERM and SIGKILL.
const termGrace = 3 * time.Second

// shutdown stops every process, syncs, unmounts and calls reboot(2). It
// only returns if reboot(2) fails. It must run on the goroutine that reaps
// children, so no other wait4 races it.
func (in *initProc) shutdown(a Action, reason string) error {
	fmt.Fprintln(in.console, ShutdownLine(a, reason))
	start := time.Now()
	if err := unix.Kill(-1, unix.SIGTERM); err != nil && !errors.Is(err, unix.ESRCH) {
		in.log.Warn("SIGTERM to all processes failed", "err", err)
	}
	if !reapUntilNone(termGrace) {
		left := countProcesses()
		in.log.Warn("processes still running after SIGTERM, killing them", "count", left, "waited", termGrace)
		if err := unix.Kill(-1, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
			in.log.Warn("SIGKILL to all processes failed", "err", err)
		}
		reapUntilNone(time.Second)
	}
	unix.Sync()
	if err := unmountAll(); err != nil {
		in.log.Debug("unmount at shutdown", "err", err)
	}
	in.log.Debug("processes stopped", "took", time.Since(start).Round(time.Millisecond))
	if err := unix.Reboot(a.rebootCmd()); err != nil {
		return fmt.Errorf("reboot(%s): %w", a, err)
	}
	return nil
}

// reapUntilNone reaps children until there are none left (true) or the
// time is up (false).
func reapUntilNone(limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for {
		for {
			pid, err := unix.Wait4(-1, nil, unix.WNOHANG, nil)
			if errors.Is(err, unix.ECHILD) {
				return true
			}
			if err != nil || pid <= 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countProcesses counts the processes other than PID 1 and kernel threads.
func countProcesses() int {
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		if e.Name() == "1" || e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		// Kernel threads have an empty cmdline.
		if data, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && len(data) > 0 {
			n++
		}
	}
	return n
}

//go:build linux

package guestinit

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Restart backoff of the agent child: doubled after each quick exit,
// reset after a run longer than stableRun.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 10 * time.Second
	stableRun  = 30 * time.Second
)

// nextBackoff returns the delay before restarting an agent that ran for
// ran, given the previous delay.
func nextBackoff(prev, ran time.Duration) time.Duration {
	if ran >= stableRun || prev < minBackoff {
		return minBackoff
	}
	next := prev * 2
	if next > maxBackoff {
		next = maxBackoff
	}
	return next
}

// startAgent starts the agent role as a child. PID 1 reaps it with the
// other children (wait4(-1)), so it is started with ForkExec rather than
// os/exec, whose Wait would race the reaper.
func (in *initProc) startAgent() {
	argv := append([]string{"mb-agent", AgentRoleFlag}, in.opts.AgentArgs...)
	devnull, err := os.Open("/dev/null")
	if err != nil {
		in.log.Error("open /dev/null for the agent", "err", err)
		in.scheduleRestart(0)
		return
	}
	defer devnull.Close()
	pid, err := syscall.ForkExec("/proc/self/exe", argv, &syscall.ProcAttr{
		Dir:   "/",
		Env:   append([]string{"PATH=" + searchPath, "HOME=/root", "TERM=linux", EnvPID1 + "=1"}, in.agentEnv...),
		Files: []uintptr{devnull.Fd(), in.console.Fd(), in.console.Fd()},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		in.log.Error("start the agent", "err", fmt.Errorf("re-exec /proc/self/exe: %w", err))
		in.scheduleRestart(0)
		return
	}
	in.agentPID = pid
	in.agentStarted = time.Now()
}

func (in *initProc) scheduleRestart(ran time.Duration) {
	in.backoff = nextBackoff(in.backoff, ran)
	in.restart = time.NewTimer(in.backoff)
}

// reap collects every exited child; when the agent is among them it logs
// how it ended and schedules its restart.
func (in *initProc) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		if in.reporterExited(pid, ws) {
			continue
		}
		if pid != in.agentPID || in.agentPID == 0 {
			continue
		}
		in.agentPID = 0
		if in.shuttingDown {
			continue
		}
		ran := time.Since(in.agentStarted)
		in.scheduleRestart(ran)
		in.log.Warn("agent exited; restarting it", "status", describeWait(ws), "ran", ran.Round(time.Millisecond), "restart_in", in.backoff)
	}
}

func describeWait(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exit %d", ws.ExitStatus())
	case ws.Signaled():
		return "killed by " + unix.SignalName(ws.Signal())
	default:
		return fmt.Sprintf("wait status %#x", uint32(ws))
	}
}

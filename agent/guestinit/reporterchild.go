//go:build linux

package guestinit

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// reporterProc is a running (or waiting) reporter child.
type reporterProc struct {
	Reporter
	pid     int
	started time.Time
	backoff time.Duration
}

// startReporters starts the reporters the command line asks for.
func (in *initProc) startReporters(rs []Reporter) {
	in.reporterDue = make(chan *reporterProc, 2*len(rs)+1)
	for _, r := range rs {
		p := &reporterProc{Reporter: r}
		in.reporters = append(in.reporters, p)
		in.startReporter(p)
	}
}

// startReporter starts mb-agent with the reporter's arguments, as the
// agent child is started: re-executed, in its own session, logging to the
// console.
func (in *initProc) startReporter(r *reporterProc) {
	argv := append([]string{"mb-agent"}, r.Args...)
	devnull, err := os.Open("/dev/null")
	if err != nil {
		in.log.Error("open /dev/null for a reporter", "reporter", r.Name, "err", err)
		in.scheduleReporter(r, 0)
		return
	}
	defer devnull.Close()
	pid, err := syscall.ForkExec("/proc/self/exe", argv, &syscall.ProcAttr{
		Dir:   "/",
		Env:   append([]string{"PATH=" + searchPath, "HOME=/root", "TERM=linux"}, r.Env...),
		Files: []uintptr{devnull.Fd(), in.console.Fd(), in.console.Fd()},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		in.log.Error("start a reporter", "reporter", r.Name, "err", fmt.Errorf("re-exec /proc/self/exe: %w", err))
		in.scheduleReporter(r, 0)
		return
	}
	r.pid, r.started = pid, time.Now()
	in.log.Info("reporter started", "reporter", r.Name, "pid", pid)
}

func (in *initProc) scheduleReporter(r *reporterProc, ran time.Duration) {
	r.backoff = nextBackoff(r.backoff, ran)
	due := in.reporterDue
	time.AfterFunc(r.backoff, func() { due <- r })
}

// reporterExited handles the exit of a reporter child, reported by reap:
// one that exited 0 stopped on request (SIGTERM) and stays stopped; one
// that failed or was killed is restarted with backoff.
func (in *initProc) reporterExited(pid int, ws unix.WaitStatus) bool {
	for _, r := range in.reporters {
		if r.pid != pid || pid == 0 {
			continue
		}
		r.pid = 0
		if in.shuttingDown {
			return true
		}
		ran := time.Since(r.started)
		if ws.Exited() && ws.ExitStatus() == 0 {
			in.log.Info("reporter stopped cleanly; not restarting it", "reporter", r.Name, "ran", ran.Round(time.Millisecond))
			return true
		}
		in.scheduleReporter(r, ran)
		in.log.Warn("reporter exited; restarting it", "reporter", r.Name, "status", describeWait(ws), "ran", ran.Round(time.Millisecond), "restart_in", r.backoff)
		return true
	}
	return false
}

package daemon

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/vm/spec"
	"github.com/mbvm/mb/vmhost"
)

// outcome is how a run ended, as the daemon records it.
type outcome struct {
	state     string
	reason    string
	exitCode  *int
	stoppedBy string
	kind      exitKind
}

// classify turns what the daemon knows about an ended vmhost into a state.
// rec is the exit record (nil when there is none); it counts only when it
// belongs to the vmhost with PID pid. ps is the wait status of a vmhost
// this daemon spawned, nil for a re-adopted one. A vmhost gone without a
// record of its own was killed: a crash.
func classify(rec *vmhost.ExitRecord, pid int, ps *os.ProcessState) outcome {
	if rec != nil && (pid == 0 || rec.PID == pid) {
		code := rec.ExitCode
		o := outcome{exitCode: &code, stoppedBy: rec.StoppedBy}
		switch {
		case code == 2:
			o.state, o.kind = api.StateCrashed, exitStartFailed
			o.reason = "vmhost could not start the VM: " + rec.Reason
		case rec.Crashed || code != 0:
			o.state, o.kind = api.StateCrashed, exitCrash
			o.reason = rec.Reason
			if o.reason == "" {
				o.reason = fmt.Sprintf("vmhost exited with code %d", code)
			}
		case rec.StoppedBy == "guest":
			o.state, o.kind, o.reason = api.StateStopped, exitClean, "the guest powered off"
		default:
			o.state, o.kind = api.StateStopped, exitClean
			if rec.StoppedBy != "" {
				o.reason = "stopped (" + rec.StoppedBy + ")"
			}
		}
		return o
	}
	o := outcome{state: api.StateCrashed, kind: exitCrash}
	if ps == nil {
		o.reason = "vmhost died without an exit record (killed?)"
		return o
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		o.reason = fmt.Sprintf("vmhost was killed by signal %s", ws.Signal())
		return o
	}
	code := ps.ExitCode()
	o.exitCode = &code
	switch code {
	case 2:
		o.kind = exitStartFailed
		o.reason = "vmhost could not start the VM (exit code 2)"
		return o
	case 0:
		// vmhost's own exit code says the VM stopped cleanly; only the
		// record is missing (it could not be written: a full disk).
		o.state, o.kind = api.StateStopped, exitClean
		o.reason = "stopped (vmhost exited cleanly but could not write its exit record)"
		return o
	}
	o.reason = fmt.Sprintf("vmhost exited with code %d without an exit record", code)
	return o
}

// watch waits for the vmhost of run r to exit, records how it ended, and
// applies the restart policy.
func (d *Daemon) watch(v *vm, r *run) {
	select {
	case <-r.exited:
	case <-d.ctx.Done():
		return // the daemon is going away; the VM keeps running
	}
	if r.ref != nil {
		r.ref.close()
	}
	rec, _ := vmhost.ReadExitRecord(v.dir)
	o := suspendedOutcome(v, classify(rec, r.pid, r.waitStatus)) // snapshot.go
	if o.kind == exitStartFailed && rec == nil {
		if tail := lastLine(v.file(VMHostLogName)); tail != "" {
			o.reason += ": " + tail
		}
	}
	if rec == nil || rec.PID != r.pid {
		// Keep the verdict for later daemons, which see only the files.
		code := 1
		if o.exitCode != nil {
			code = *o.exitCode
		}
		_ = vmhost.WriteExitRecord(v.dir, vmhost.ExitRecord{Time: time.Now().UTC(), StartedAt: r.started.UTC(), PID: r.pid,
			ExitCode: code, Crashed: true, Reason: o.reason})
	}
	userStopped := v.userStopped()

	v.mu.Lock()
	if v.cur == r {
		v.cur = nil
	}
	policy := spec.RestartNo
	if v.spec != nil {
		policy = v.spec.Restart
	}
	deleted := v.deleted
	restarts := v.restarts
	// Decide before the new state shows, so that a VM given up on never
	// appears crashed without saying why.
	dec := decideRestart(d.cfg.Restart, policy, o.kind, userStopped, v.restartLog, time.Now())
	reason := o.reason
	if dec.GaveUp {
		reason += " (" + dec.Why + ")"
	}
	v.state, v.reason, v.exitCode, v.stoppedBy = o.state, reason, o.exitCode, o.stoppedBy
	v.ready = false
	v.mu.Unlock()

	typ := api.EventStopped
	if o.state == api.StateCrashed {
		typ = api.EventCrashed
	}
	d.log.Info("vmhost exited", "vm", v.name, "pid", r.pid, "state", o.state, "reason", o.reason)
	d.events.publish(api.Event{VM: v.name, Type: typ, State: o.state, Reason: o.reason, ExitCode: o.exitCode, Restarts: restarts})
	close(r.done)
	if deleted || d.ctx.Err() != nil {
		return
	}
	if dec.GaveUp {
		d.log.Warn("not restarting VM", "vm", v.name, "why", dec.Why)
		d.events.publish(api.Event{VM: v.name, Type: api.EventGaveUp, State: o.state, Reason: dec.Why, Restarts: restarts})
		return
	}
	if dec.Restart {
		d.wg.Add(1)
		go d.restartAfter(v, dec.Delay)
	}
}

// lastLine returns the last non-empty line of a small tail of path.
func lastLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := st.Size() - 4096
	if off < 0 {
		off = 0
	}
	buf := make([]byte, st.Size()-off)
	n, _ := f.ReadAt(buf, off)
	buf = buf[:n]
	end := len(buf)
	for end > 0 && (buf[end-1] == '\n' || buf[end-1] == '\r' || buf[end-1] == ' ') {
		end--
	}
	start := end
	for start > 0 && buf[start-1] != '\n' {
		start--
	}
	return string(buf[start:end])
}

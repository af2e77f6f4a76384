package daemon

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/internal/lockfile"
	"github.com/mbvm/mb/vm/image"
	"github.com/mbvm/mb/vm/spec"
	"github.com/mbvm/mb/vmhost"
)

// adoptAll reads $MB_HOME/vms/* at daemon start: a VM whose vmhost holds its
// lock is re-adopted as running and watched; one with stale files is marked
// stopped or crashed (as its exit record says) and cleaned. VMs that the
// user did not stop are started under restart policy always, and, under
// on-failure, when they crashed while no daemon watched them.
func (d *Daemon) adoptAll() {
	entries, err := os.ReadDir(layout.VMsDir(d.cfg.Home))
	if err != nil {
		d.log.Warn("cannot read the VM directory", "err", err)
		return
	}
	var (
		mu      sync.Mutex
		toStart []*vm
		crashed []*vm
		wg      sync.WaitGroup
		sem     = make(chan struct{}, 16) // a hung vmhost must not delay the others
	)
	for _, e := range entries {
		if !e.IsDir() || spec.ValidateName(e.Name()) != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			v := d.load(e.Name())
			d.mu.Lock()
			d.vms[v.name] = v
			d.mu.Unlock()
			running, last := d.adopt(v)
			if running {
				return
			}
			v.mu.Lock()
			policy := spec.RestartNo
			if v.spec != nil {
				policy = v.spec.Restart
			}
			v.mu.Unlock()
			if v.userStopped() {
				return
			}
			mu.Lock()
			switch {
			case policy == spec.RestartAlways:
				toStart = append(toStart, v)
			case policy == spec.RestartOnFailure && last == exitCrash:
				crashed = append(crashed, v)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, v := range toStart {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.bootStart(v)
		}()
	}
	for _, v := range crashed {
		// A restart like any other: counted, with its event.
		d.log.Info("restarting VM that crashed while no daemon ran", "vm", v.name)
		d.wg.Add(1)
		go d.restartAfter(v, 0)
	}
}

// bootStart starts a VM with restart policy always at daemon start. It is
// a start by the policy, not by the user: a user's stop that came first
// (even while the daemon was starting) holds, and its marker stays.
func (d *Daemon) bootStart(v *vm) {
	ctx, cancel := context.WithTimeout(d.ctx, 5*time.Minute)
	defer cancel()
	d.log.Info("starting VM with restart policy always", "vm", v.name)
	if _, err := d.startVM(ctx, v, 0, true); err != nil {
		d.log.Warn("cannot start VM", "vm", v.name, "err", err)
	}
}

// load reads a VM's spec (and image manifest) into a new record.
func (d *Daemon) load(name string) *vm {
	v := newVM(name, layout.VMDir(d.cfg.Home, name))
	d.reload(v)
	return v
}

// reload reads v's spec.yaml and image manifest again.
func (d *Daemon) reload(v *vm) {
	s, err := spec.Load(v.dir)
	if err == nil && s.Name != v.name {
		err = fmt.Errorf("%s names the VM %q but its directory is %s: set name: %s in it, or rename the directory", v.file(spec.FileName), s.Name, v.dir, v.name)
	}
	var m *image.Manifest
	if err == nil && s.Image != "" {
		m, _ = image.Load(d.cfg.Home, s.Image)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.specErr = err
	if err != nil {
		return
	}
	v.spec, v.manifest = s, m
}

// adopt re-adopts a live vmhost, or records how the last run ended and
// cleans its stale files. It reports whether a vmhost runs and, when none
// does, how the last run ended.
func (d *Daemon) adopt(v *vm) (bool, exitKind) {
	lockPath := v.file(vmhost.LockName)
	held, pid, err := lockfile.Probe(lockPath)
	if err != nil {
		d.log.Warn("cannot probe the vmhost lock", "vm", v.name, "err", err)
	}
	if held {
		r := &run{pid: pid, exited: make(chan struct{}), done: make(chan struct{})}
		ctx, cancel := context.WithTimeout(d.ctx, 5*time.Second)
		resp, err := vmhost.NewClient(v.socket()).Call(ctx, vmhost.Request{Method: vmhost.MethodInfo})
		cancel()
		state, reason := api.StateStarting, "vmhost does not answer yet"
		if err == nil {
			state, reason = daemonState(resp.State), ""
			if resp.StartedAt != nil {
				r.started = *resp.StartedAt
			}
			if resp.PID > 0 {
				r.pid = resp.PID
			}
		}
		if !signalable(r.pid) {
			// The vmhost took its lock but has not written its PID yet.
			time.Sleep(200 * time.Millisecond)
			if _, p, err := lockfile.Probe(lockPath); err == nil {
				r.pid = p
			}
		}
		if signalable(r.pid) {
			if ref, err := openProc(r.pid); err == nil {
				r.ref = ref
			}
		} else {
			d.log.Warn("adopted a vmhost whose PID is unknown: it will not be signalled", "vm", v.name, "pid", r.pid)
		}
		if r.started.IsZero() {
			if st, err := os.Stat(lockPath); err == nil {
				r.started = st.ModTime()
			}
		}
		v.mu.Lock()
		v.cur, v.state, v.reason = r, state, reason
		v.mu.Unlock()
		go func() {
			if waitForExit(d.ctx, r.pid, lockPath) {
				close(r.exited)
			}
		}()
		go d.watch(v, r)
		go d.collectGuestMessages(v, r, true)
		d.log.Info("re-adopted running VM", "vm", v.name, "vmhost_pid", r.pid, "state", state)
		d.events.publish(api.Event{VM: v.name, Type: api.EventAdopted, State: state, Reason: reason})
		return true, exitClean
	}
	rec, _ := vmhost.ReadExitRecord(v.dir)
	pidFile := v.file(vmhost.PIDName)
	var o outcome
	if st, err := os.Stat(pidFile); err == nil && (rec == nil || rec.Time.Before(st.ModTime())) {
		// The last vmhost never removed its PID file and left no newer
		// record: it was killed (or the host went down under it).
		o = outcome{state: api.StateCrashed, kind: exitCrash, reason: "vmhost died without an exit record (killed, or the host went down)"}
		// Keep the verdict for later daemons: the PID file goes below.
		_ = vmhost.WriteExitRecord(v.dir, vmhost.ExitRecord{Time: time.Now().UTC(), ExitCode: 1, Crashed: true, Reason: o.reason})
	} else if rec != nil {
		o = classify(rec, 0, nil)
	} else {
		o = outcome{state: api.StateStopped}
	}
	o = suspendedOutcome(v, o) // snapshot.go
	v.mu.Lock()
	if v.specErr == nil {
		v.state, v.reason, v.exitCode, v.stoppedBy = o.state, o.reason, o.exitCode, o.stoppedBy
	}
	v.mu.Unlock()
	cleanStale(v.dir)
	return false, o.kind
}

// daemonState maps a vmhost state to the daemon's states.
func daemonState(s string) string {
	switch s {
	case vmhost.StateRunning, vmhost.StateStarting, vmhost.StateStopping, vmhost.StateStopped:
		return s
	case vmhost.StateError:
		return api.StateCrashed
	}
	return api.StateRunning
}

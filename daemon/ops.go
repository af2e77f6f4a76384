package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/vm/image"
	"github.com/mbvm/mb/vm/spec"
	"github.com/mbvm/mb/vmhost"
)

// httpError is an error with the HTTP status it is answered with.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

func notFound(name string) error {
	return errorf(http.StatusNotFound, "no VM named %q: create it with `mb start %s`, or list VMs with `mb ls`", name, name)
}

// createVM validates a spec and creates the VM's directory and spec.yaml.
func (d *Daemon) createVM(doc []byte) (*vm, error) {
	s, err := spec.Parse(doc)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "%v", err)
	}
	if err := spec.ValidateName(s.Name); err != nil {
		return nil, errorf(http.StatusBadRequest, "%v", err)
	}
	s.SetDefaults()
	if err := s.Validate(); err != nil {
		return nil, errorf(http.StatusBadRequest, "bad spec for VM %s: %v", s.Name, err)
	}
	if err := checkVMSocketPaths(d.cfg.Home, s.Name, s.Backend); err != nil {
		return nil, errorf(http.StatusBadRequest, "%v", err)
	}
	if err := s.CheckFiles(); err != nil {
		return nil, errorf(http.StatusBadRequest, "VM %s: %v", s.Name, err)
	}
	var m *image.Manifest
	if s.Image != "" && s.Backend != "fake" {
		if m, err = image.Load(d.cfg.Home, s.Image); err != nil {
			return nil, errorf(http.StatusBadRequest, "%v", err)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.vms[s.Name]; ok {
		return nil, errorf(http.StatusConflict, "VM %s already exists: start it with `mb start %s`, or remove it first with `mb rm %s`", s.Name, s.Name, s.Name)
	}
	dir := layout.VMDir(d.cfg.Home, s.Name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, errorf(http.StatusConflict, "directory %s already exists but holds no VM the daemon knows: remove it, or restart the daemon to load it", dir)
		}
		return nil, fmt.Errorf("create VM directory: %w", err)
	}
	if err := s.Save(dir); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	v := newVM(s.Name, dir)
	v.spec, v.manifest = s, m
	d.vms[s.Name] = v
	d.log.Info("created VM", "vm", s.Name)
	d.events.publish(api.Event{VM: s.Name, Type: api.EventCreated, State: api.StateStopped})
	return v, nil
}

// startVM starts v unless it runs already, and waits until its vmhost
// reports running. Concurrent starts queue on v.op; all succeed, one VM
// runs. restart marks a start made by the restart policy, which does not
// clear the user's stop.
func (d *Daemon) startVM(ctx context.Context, v *vm, timeout time.Duration, restart bool) (api.VM, error) {
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := v.op.lock(ctx); err != nil {
		return api.VM{}, errorf(http.StatusConflict, "VM %s is busy with another operation: %v", v.name, err)
	}
	defer v.op.unlock()
	if v.current() == nil {
		// The user may have edited spec.yaml while the VM was stopped.
		d.reload(v)
	}
	v.mu.Lock()
	specErr, deleted := v.specErr, v.deleted
	v.mu.Unlock()
	if deleted {
		return api.VM{}, notFound(v.name)
	}
	if specErr != nil {
		return api.VM{}, errorf(http.StatusBadRequest, "VM %s cannot start: %v (fix %s)", v.name, specErr, v.file(spec.FileName))
	}
	if restart && v.userStopped() {
		return v.snapshot(), nil
	}
	if !restart {
		if err := v.setUserStopped(false); err != nil {
			return api.VM{}, fmt.Errorf("clear the stopped mark of VM %s: %w", v.name, err)
		}
	}
	if r := v.current(); r != nil {
		if err := d.waitRunning(ctx, v, r); err != nil {
			return api.VM{}, err
		}
		d.markRunning(v, r)
		return v.snapshot(), nil
	}
	v.setState(api.StateStarting, "")
	d.events.publish(api.Event{VM: v.name, Type: api.EventStarting, State: api.StateStarting})
	r, err := d.spawn(v)
	if err != nil {
		v.setState(api.StateCrashed, err.Error())
		return api.VM{}, err
	}
	if err := d.waitRunning(ctx, v, r); err != nil {
		return api.VM{}, err
	}
	d.markRunning(v, r)
	return v.snapshot(), nil
}

// markRunning records that run r reached running.
func (d *Daemon) markRunning(v *vm, r *run) {
	v.mu.Lock()
	if v.cur != r || v.state == api.StateRunning {
		v.mu.Unlock()
		return
	}
	v.state, v.reason, v.exitCode, v.stoppedBy = api.StateRunning, "", nil, ""
	restarts := v.restarts
	v.mu.Unlock()
	d.events.publish(api.Event{VM: v.name, Type: api.EventRunning, State: api.StateRunning, Restarts: restarts})
}

// restartAfter restarts v after delay under its restart policy.
func (d *Daemon) restartAfter(v *vm, delay time.Duration) {
	defer d.wg.Done()
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-d.ctx.Done():
		return
	case <-t.C:
	}
	v.mu.Lock()
	skip := v.deleted || v.cur != nil
	if !skip {
		v.restarts++
		v.restartLog = append(v.restartLog, time.Now())
	}
	restarts := v.restarts
	v.mu.Unlock()
	if skip || v.userStopped() {
		return
	}
	d.log.Info("restarting VM", "vm", v.name, "restarts", restarts)
	d.events.publish(api.Event{VM: v.name, Type: api.EventRestarting, State: api.StateStarting, Restarts: restarts})
	ctx, cancel := context.WithTimeout(d.ctx, 5*time.Minute)
	defer cancel()
	if _, err := d.startVM(ctx, v, 0, true); err != nil {
		d.log.Warn("restart failed", "vm", v.name, "err", err)
	}
}

// stopVM stops v: gracefully within timeout (0: the spec's stop_timeout),
// or at once when force. The VM is marked as stopped by the user, so no
// restart policy brings it back. Stopping a stopped VM succeeds.
func (d *Daemon) stopVM(ctx context.Context, v *vm, timeout time.Duration, force bool) (api.VM, error) {
	if err := v.op.lock(ctx); err != nil {
		return api.VM{}, errorf(http.StatusConflict, "VM %s is busy with another operation: %v", v.name, err)
	}
	defer v.op.unlock()
	if err := v.setUserStopped(true); err != nil {
		return api.VM{}, fmt.Errorf("mark VM %s as stopped: %w", v.name, err)
	}
	if err := d.stopLocked(ctx, v, timeout, force); err != nil {
		return api.VM{}, err
	}
	return v.snapshot(), nil
}

// stopLocked brings the current run down; the caller holds v.op. A failed
// graceful stop falls back to force_stop, and a vmhost that does not
// answer is killed (its QEMU dies with it).
func (d *Daemon) stopLocked(ctx context.Context, v *vm, timeout time.Duration, force bool) error {
	r := v.current()
	if r == nil {
		return nil
	}
	v.mu.Lock()
	if timeout <= 0 && v.spec != nil {
		timeout = v.spec.StopTimeout.D()
	}
	v.state, v.reason = api.StateStopping, ""
	v.mu.Unlock()
	if timeout <= 0 {
		timeout = vmhost.DefaultStopTimeout
	}
	d.events.publish(api.Event{VM: v.name, Type: api.EventStopping, State: api.StateStopping})
	c := vmhost.NewClient(v.socket())
	var err error
	killed := false
	if !force {
		secs := (timeout + time.Second - 1) / time.Second
		// vmhost answers by vmhost.StopBudget; one that has not answered
		// shortly after is hung, and waiting on for a force_stop would
		// overrun the user's timeout: kill it now (its QEMU dies with it).
		budget := vmhost.StopBudget(secs * time.Second)
		sctx, cancel := context.WithTimeout(ctx, budget+min(500*time.Millisecond, (secs*time.Second-budget)/2))
		_, err = c.Call(sctx, vmhost.Request{Method: vmhost.MethodStop, TimeoutSeconds: int(secs)})
		cancel()
		if errors.Is(err, vmhost.ErrNoAnswer) && r.pid > 1 {
			d.log.Warn("vmhost does not answer its stop; killing it", "vm", v.name, "pid", r.pid, "err", err)
			// The user asked for the stop: the record says stopped by
			// kill, not crashed. It is best effort; the kill is not.
			_ = vmhost.WriteExitRecord(v.dir, vmhost.ExitRecord{Time: time.Now().UTC(), StartedAt: r.started.UTC(), PID: r.pid,
				StoppedBy: vmhost.ModeKill, Reason: "vmhost did not answer the stop; the daemon killed it"})
			_ = syscall.Kill(r.pid, syscall.SIGKILL)
			killed = true
		} else if err != nil {
			d.log.Warn("graceful stop failed; forcing", "vm", v.name, "err", err)
		}
	}
	if !killed && (force || err != nil) {
		if _, err = c.Call(ctx, vmhost.Request{Method: vmhost.MethodForceStop}); err != nil {
			d.log.Warn("force_stop failed; killing vmhost", "vm", v.name, "pid", r.pid, "err", err)
			_ = syscall.Kill(r.pid, syscall.SIGKILL)
		}
	}
	wait := time.NewTimer(60 * time.Second)
	defer wait.Stop()
	select {
	case <-r.done:
		return nil
	case <-wait.C:
		_ = syscall.Kill(r.pid, syscall.SIGKILL)
	case <-ctx.Done():
		return fmt.Errorf("stop VM %s: %w", v.name, ctx.Err())
	}
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop VM %s: vmhost PID %d did not exit: %w", v.name, r.pid, ctx.Err())
	}
}

// deleteVM removes v and its directory. A running VM is refused unless
// force, which stops it first.
func (d *Daemon) deleteVM(ctx context.Context, v *vm, force bool) error {
	if err := v.op.lock(ctx); err != nil {
		return errorf(http.StatusConflict, "VM %s is busy with another operation: %v", v.name, err)
	}
	defer v.op.unlock()
	if v.current() != nil {
		if !force {
			return errorf(http.StatusConflict, "VM %s is running: stop it first with `mb stop %s`, or use `mb rm --force %s`", v.name, v.name, v.name)
		}
		if err := v.setUserStopped(true); err != nil {
			return fmt.Errorf("mark VM %s as stopped: %w", v.name, err)
		}
		if err := d.stopLocked(ctx, v, 0, false); err != nil {
			return err
		}
	}
	v.mu.Lock()
	v.deleted = true
	v.mu.Unlock()
	d.mu.Lock()
	delete(d.vms, v.name)
	d.mu.Unlock()
	if err := os.RemoveAll(v.dir); err != nil {
		return fmt.Errorf("remove %s: %w", v.dir, err)
	}
	d.log.Info("deleted VM", "vm", v.name)
	d.events.publish(api.Event{VM: v.name, Type: api.EventDeleted})
	return nil
}

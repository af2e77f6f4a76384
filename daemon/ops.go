package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/vm/disk"
	"github.com/mbvm/mb/vm/image"
	"github.com/mbvm/mb/vm/spec"
	"github.com/mbvm/mb/vmhost"
)

// httpError is an error with the HTTP status and the api.Code* it is
// answered with.
type httpError struct {
	status int
	code   string
	msg    string
}

func (e *httpError) Error() string { return e.msg }

// errorf makes an error answered with status and the code that status
// implies (see statusCode); errorc names the code.
func errorf(status int, format string, args ...any) error {
	return &httpError{status: status, code: statusCode(status), msg: fmt.Sprintf(format, args...)}
}

// errorc makes an error answered with status and code.
func errorc(status int, code, format string, args ...any) error {
	return &httpError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// statusCode is the code of an error that names none.
func statusCode(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusRequestTimeout:
		return api.CodeBadRequest
	case http.StatusNotFound:
		return api.CodeNotFound
	case http.StatusConflict:
		return api.CodeConflict
	case http.StatusRequestEntityTooLarge:
		return api.CodeTooLarge
	case http.StatusBadGateway:
		return api.CodeVMHostFailed
	case http.StatusServiceUnavailable:
		return api.CodeBusy
	}
	return api.CodeInternal
}

// notFound is the error for a VM the daemon does not know. A directory of
// that name that holds no VM (a symlink, a file, a directory made by hand
// after the daemon started) is named as the cause.
func (d *Daemon) notFound(name string) error {
	dir := layout.VMDir(d.cfg.Home, name)
	if st, err := os.Lstat(dir); err == nil {
		what := "a directory the daemon did not load"
		switch {
		case st.Mode()&os.ModeSymlink != 0:
			what = "a symlink, which mb does not follow"
		case !st.IsDir():
			what = "not a directory"
		}
		return errorc(http.StatusNotFound, api.CodeStrayDir, "no VM named %q: %s exists but holds no VM (%s): remove or rename it, then `mb start %s`", name, dir, what, name)
	}
	return errorc(http.StatusNotFound, api.CodeNotFound, "no VM named %q: create it with `mb start %s`, or list VMs with `mb ls`", name, name)
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
	if err := decideDiskFormat(s); err != nil {
		return nil, errorf(http.StatusBadRequest, "VM %s: %v", s.Name, err)
	}
	var m *image.Manifest
	if s.Image != "" && s.Backend != "fake" {
		// Shared image lock until the VM exists: `mb image rm` (which takes
		// it exclusively) then sees the VM and refuses.
		ctx, cancel := context.WithTimeout(context.Background(), imageLockWait)
		release, err := image.Share(ctx, d.cfg.Home, s.Image)
		cancel()
		if err != nil {
			return nil, errorf(http.StatusConflict, "VM %s: %v", s.Name, err)
		}
		defer release()
		if m, err = image.Load(d.cfg.Home, s.Image); err != nil {
			return nil, errorf(http.StatusBadRequest, "%v", err)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.vms[s.Name]; ok {
		return nil, errorc(http.StatusConflict, api.CodeExists, "VM %s already exists: start it with `mb start %s`, or remove it first with `mb rm %s`", s.Name, s.Name, s.Name)
	}
	dir := layout.VMDir(d.cfg.Home, s.Name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			e := d.notFound(s.Name).(*httpError)
			e.status = http.StatusConflict
			return nil, e
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
		return api.VM{}, errorc(http.StatusConflict, api.CodeBusy, "VM %s is busy with another operation: %v", v.name, err)
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
		return api.VM{}, d.notFound(v.name)
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
		// The user's start is a fresh start: the restarts before it no
		// longer count against the restart limit.
		v.mu.Lock()
		v.restartLog = nil
		v.mu.Unlock()
	}
	if r := v.current(); r != nil {
		if err := d.waitRunning(ctx, v, r); err != nil {
			return api.VM{}, err
		}
		d.markRunning(v, r)
		return v.snapshot(), nil
	}
	// Shared image lock until the VM runs: its image is neither removed
	// nor replaced while vmhost builds the VM's disk on it.
	release, err := d.shareImage(ctx, v)
	if err != nil {
		return api.VM{}, errorf(http.StatusConflict, "VM %s cannot start: %v", v.name, err)
	}
	defer release()
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
		return api.VM{}, errorc(http.StatusConflict, api.CodeBusy, "VM %s is busy with another operation: %v", v.name, err)
	}
	defer v.op.unlock()
	d.markUserStopped(v)
	if err := d.stopLocked(ctx, v, timeout, force); err != nil {
		return api.VM{}, err
	}
	return v.snapshot(), nil
}

// markUserStopped records the user's stop. Stopping never depends on
// writing a file: the intent holds in memory when the marker cannot be
// written (a full $MB_HOME), and is lost only if the daemon restarts
// before it can be.
func (d *Daemon) markUserStopped(v *vm) {
	if err := v.setUserStopped(true); err != nil {
		d.log.Warn("cannot write the user-stopped marker; the stop is kept in memory only", "vm", v.name, "err", err)
	}
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
	prevState, prevReason := v.state, v.reason
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
			if kerr := r.kill(); kerr != nil {
				d.log.Warn("cannot kill vmhost", "vm", v.name, "pid", r.pid, "err", kerr)
			} else {
				killed = true
			}
		} else if err != nil {
			d.log.Warn("graceful stop failed; forcing", "vm", v.name, "err", err)
		}
	}
	if !killed && (force || err != nil) {
		if _, err = c.Call(ctx, vmhost.Request{Method: vmhost.MethodForceStop}); err != nil {
			d.log.Warn("force_stop failed; killing vmhost", "vm", v.name, "pid", r.pid, "err", err)
			if kerr := r.kill(); kerr != nil {
				v.setState(prevState, prevReason)
				return errorc(http.StatusBadGateway, api.CodeVMHostFailed, "stop VM %s: its vmhost does not answer (%v) and cannot be killed: %v; find it with `pgrep -f %s` and kill it", v.name, err, kerr, v.dir)
			}
		}
	}
	wait := time.NewTimer(60 * time.Second)
	defer wait.Stop()
	select {
	case <-r.done:
		return nil
	case <-wait.C:
		if err := r.kill(); err != nil {
			d.log.Warn("cannot kill vmhost", "vm", v.name, "pid", r.pid, "err", err)
		}
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
		return errorc(http.StatusConflict, api.CodeBusy, "VM %s is busy with another operation: %v", v.name, err)
	}
	defer v.op.unlock()
	if err := d.refuseRemoveWithUsers(v); err != nil { // snapshot_ops.go
		return err
	}
	if v.current() != nil {
		if !force {
			return errorc(http.StatusConflict, api.CodeRunning, "VM %s is running: stop it first with `mb stop %s`, or use `mb rm --force %s`", v.name, v.name, v.name)
		}
		d.markUserStopped(v)
		if err := d.stopLocked(ctx, v, 0, false); err != nil {
			return err
		}
	}
	v.mu.Lock()
	if !v.deleted {
		close(v.gone)
	}
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

// decideDiskFormat decides the format of the spec's own disk once, at
// create, and stores it in the spec (disk_format): later starts pass it to
// QEMU and never probe the disk again, whatever the guest writes into it.
// A disk that names another file (a qcow2 backing or data file) is refused.
func decideDiskFormat(s *spec.Spec) error {
	if s.Disk == "" || s.Backend == "fake" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if s.DiskFormat != "" {
		return disk.CheckStandalone(s.Disk, s.DiskFormat)
	}
	info, err := disk.Probe(ctx, s.Disk)
	if err != nil {
		return fmt.Errorf("disk %s: %w", s.Disk, err)
	}
	s.DiskFormat = info.Format
	return nil
}

// imageLockWait bounds the wait for an image that is being pulled,
// imported or removed when a VM is created from it.
const imageLockWait = 30 * time.Second

// shareImage takes the shared lock of the image v's spec names (see
// image.Share); a VM without an image, or a fake one, needs none.
func (d *Daemon) shareImage(ctx context.Context, v *vm) (func(), error) {
	v.mu.Lock()
	s := v.spec
	v.mu.Unlock()
	if s == nil || s.Image == "" || s.Backend == "fake" {
		return func() {}, nil
	}
	return image.Share(ctx, d.cfg.Home, s.Image)
}

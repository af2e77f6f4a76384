package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/vm/snapshot"
	"github.com/mbvm/mb/vmhost"
)

// suspendedOutcome turns the end of a run that left a complete saved state
// (a suspend, or a vmhost killed after writing it) into the suspended
// state: a stop the user chose, which no restart policy undoes. A start
// that failed (a restore refused) keeps its reason.
func suspendedOutcome(v *vm, o outcome) outcome {
	if o.kind == exitStartFailed || !snapshot.Suspended(v.dir) {
		return o
	}
	o.state, o.kind = api.StateSuspended, exitClean
	o.reason = "suspended: `mb start " + v.name + "` resumes it, `mb start --cold " + v.name + "` boots it afresh"
	return o
}

func (d *Daemon) handleSuspend(w http.ResponseWriter, r *http.Request, v *vm) {
	var req api.SuspendRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if req.TimeoutSeconds < 0 {
		writeError(w, errorf(http.StatusBadRequest, "timeout_seconds %d: must not be negative (0 uses the default)", req.TimeoutSeconds))
		return
	}
	out, err := d.suspendVM(r.Context(), v, time.Duration(req.TimeoutSeconds)*time.Second)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// suspendVM has v's vmhost save the VM's state and end it. The VM is
// marked stopped by the user first, so that whatever happens to this
// daemon meanwhile, no restart policy boots it afresh; a suspend that
// fails leaves the VM running and takes the mark back.
func (d *Daemon) suspendVM(ctx context.Context, v *vm, timeout time.Duration) (api.VM, error) {
	if timeout <= 0 {
		timeout = vmhost.DefaultSuspendTimeout
	}
	if err := refuseShares(v, "suspended"); err != nil {
		return api.VM{}, err
	}
	if err := v.op.lock(ctx); err != nil {
		return api.VM{}, errorc(http.StatusConflict, api.CodeBusy, "VM %s is busy with another operation: %v", v.name, err)
	}
	defer v.op.unlock()
	r := v.current()
	if r == nil {
		if snapshot.Suspended(v.dir) {
			return v.snapshot(), nil
		}
		return api.VM{}, errorc(http.StatusConflict, api.CodeNotRunning, "VM %s is not running: only a running VM can be suspended (`mb start %s` first)", v.name, v.name)
	}
	d.markUserStopped(v)
	c := vmhost.NewClient(v.socket())
	sctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
	defer cancel()
	_, err := c.Call(sctx, vmhost.Request{Method: vmhost.MethodSuspend, TimeoutSeconds: int((timeout + time.Second - 1) / time.Second)})
	if err != nil {
		if serr := v.setUserStopped(false); serr != nil {
			d.log.Warn("cannot clear the user-stopped marker", "vm", v.name, "err", serr)
		}
		var re *vmhost.RemoteError
		if errors.As(err, &re) && re.Code == vmhost.CodeNotAvailable {
			return api.VM{}, errorc(http.StatusConflict, api.CodeConflict, "VM %s cannot be suspended: %s", v.name, re.Message)
		}
		return api.VM{}, errorc(http.StatusBadGateway, api.CodeVMHostFailed, "suspend VM %s: %v", v.name, err)
	}
	select {
	case <-r.done:
	case <-sctx.Done():
		return api.VM{}, fmt.Errorf("suspend VM %s: its state is saved but vmhost (PID %d) did not exit: %w", v.name, r.pid, sctx.Err())
	}
	return v.snapshot(), nil
}

// prepareStart applies a start's --cold (discard the saved state) and
// --from (restore a snapshot) before the start itself. Both need the VM
// stopped.
func (d *Daemon) prepareStart(ctx context.Context, v *vm, req api.StartRequest) error {
	if !req.Cold && req.From == "" {
		return nil
	}
	if req.Cold && req.From != "" {
		return errorf(http.StatusBadRequest, "cold and from contradict each other: a cold start boots afresh, --from restores a snapshot")
	}
	if err := v.op.lock(ctx); err != nil {
		return errorc(http.StatusConflict, api.CodeBusy, "VM %s is busy with another operation: %v", v.name, err)
	}
	defer v.op.unlock()
	if v.current() != nil {
		return errorc(http.StatusConflict, api.CodeRunning, "VM %s is running: stop or suspend it before a start with --cold or --from", v.name)
	}
	if req.Cold {
		if err := snapshot.Discard(v.dir); err != nil {
			return err
		}
		if err := os.Remove(v.file(snapshot.MemoryName)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("discard the saved memory of VM %s: %w", v.name, err)
		}
		d.log.Info("discarded the saved state for a cold start", "vm", v.name)
		return nil
	}
	return d.prepareFrom(v, req.From)
}

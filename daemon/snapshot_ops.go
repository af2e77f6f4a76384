package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/vm/disk"
	"github.com/mbvm/mb/vm/snapshot"
	"github.com/mbvm/mb/vm/spec"
	"github.com/mbvm/mb/vm/sshkeys"
	"github.com/mbvm/mb/vmhost"
)

// refuseShares is the error for a VM with host folder shares, whose
// virtiofs state QEMU cannot save.
func refuseShares(v *vm, what string) error {
	v.mu.Lock()
	s := v.spec
	v.mu.Unlock()
	if s == nil || len(s.Shares) == 0 {
		return nil
	}
	return errorc(http.StatusConflict, api.CodeConflict, "VM %s has host folder shares (shares: in its spec), whose state QEMU cannot save: it cannot be %s; stop it with `mb stop %s` instead", v.name, what, v.name)
}

func (d *Daemon) handleSnapshotSave(w http.ResponseWriter, r *http.Request, v *vm) {
	var req api.SnapshotRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	out, err := d.saveSnapshot(r.Context(), v, req.Name, time.Duration(req.TimeoutSeconds)*time.Second)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, out)
}

func (d *Daemon) handleSnapshotList(w http.ResponseWriter, r *http.Request, v *vm) {
	names, err := listSnapshots(v.dir)
	if err != nil {
		writeError(w, err)
		return
	}
	out := []api.Snapshot{}
	for _, n := range names {
		s, err := d.snapshotInfo(v, n)
		if err != nil {
			d.log.Warn("unreadable snapshot", "vm", v.name, "snapshot", n, "err", err)
			continue
		}
		out = append(out, s)
	}
	writeJSON(w, http.StatusOK, out)
}

func (d *Daemon) handleSnapshotRemove(w http.ResponseWriter, r *http.Request, v *vm) {
	snap := r.PathValue("snap")
	if err := spec.ValidateName(snap); err != nil {
		writeError(w, errorf(http.StatusBadRequest, "snapshot name: %v", err))
		return
	}
	if err := d.removeSnapshot(r.Context(), v, snap); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"removed": snap})
}

func (d *Daemon) handleClone(w http.ResponseWriter, r *http.Request, v *vm) {
	var req api.CloneRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	out, err := d.cloneVM(r.Context(), v, req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, out)
}

// saveSnapshot has v's vmhost take snapshot snap.
func (d *Daemon) saveSnapshot(ctx context.Context, v *vm, snap string, timeout time.Duration) (api.Snapshot, error) {
	if err := spec.ValidateName(snap); err != nil {
		return api.Snapshot{}, errorf(http.StatusBadRequest, "snapshot name: %v", err)
	}
	if err := refuseShares(v, "snapshotted"); err != nil {
		return api.Snapshot{}, err
	}
	if timeout <= 0 {
		timeout = vmhost.DefaultSuspendTimeout
	}
	if err := v.op.lock(ctx); err != nil {
		return api.Snapshot{}, errorc(http.StatusConflict, api.CodeBusy, "VM %s is busy with another operation: %v", v.name, err)
	}
	defer v.op.unlock()
	c, err := runningClient(v, "taking a snapshot")
	if err != nil {
		return api.Snapshot{}, err
	}
	sctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
	defer cancel()
	_, err = c.Call(sctx, vmhost.Request{Method: vmhost.MethodSnapshot, Name: snap, TimeoutSeconds: int((timeout + time.Second - 1) / time.Second)})
	if err != nil {
		var re *vmhost.RemoteError
		if errors.As(err, &re) && (re.Code == vmhost.CodeNotAvailable || re.Code == vmhost.CodeBadRequest) {
			return api.Snapshot{}, errorc(http.StatusConflict, api.CodeConflict, "VM %s: %s", v.name, re.Message)
		}
		return api.Snapshot{}, errorc(http.StatusBadGateway, api.CodeVMHostFailed, "snapshot of VM %s: %v", v.name, err)
	}
	d.log.Info("snapshot taken", "vm", v.name, "snapshot", snap)
	return d.snapshotInfo(v, snap)
}

// listSnapshots returns the names of the complete snapshots in dir.
func listSnapshots(dir string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(dir, snapshot.SnapshotsDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") && spec.ValidateName(e.Name()) == nil {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// snapshotInfo describes snapshot snap of v.
func (d *Daemon) snapshotInfo(v *vm, snap string) (api.Snapshot, error) {
	dir := snapshot.Dir(v.dir, snap)
	m, err := snapshot.Read(dir, snapshot.SnapManifest)
	if errors.Is(err, os.ErrNotExist) {
		return api.Snapshot{}, errorc(http.StatusNotFound, api.CodeNotFound, "VM %s has no snapshot %q: list them with `mb snapshot ls %s`", v.name, snap, v.name)
	}
	if err != nil {
		return api.Snapshot{}, err
	}
	return api.Snapshot{Name: snap, VM: v.name, CreatedAt: m.CreatedAt, SizeBytes: allocated(dir), RAM: m.RAM,
		MemoryMiB: m.Machine.MemoryMiB, CPUs: m.Machine.CPUs, HasDisk: m.Disk != nil, Dependents: d.dependents(v.name, snap)}, nil
}

// allocated is the disk space the files in dir take (allocated blocks).
func allocated(dir string) uint64 {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var total uint64
	for _, e := range ents {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(dir, e.Name()), &st); err == nil {
			total += uint64(st.Blocks) * 512
		}
	}
	return total
}

// dependents names what needs snapshot snap of VM name: VMs whose disk
// sits on its disk (directly or through later snapshots), other snapshots
// whose disk does, and VMs whose pending restore reads its files.
func (d *Daemon) dependents(name, snap string) []string {
	home := d.cfg.Home
	sdir := snapshot.Dir(layout.VMDir(home, name), snap)
	sdisk := filepath.Join(sdir, snapshot.SnapDisk)
	// onChain reports whether the chain from base down reaches sdisk.
	onChain := func(base string) bool {
		for range 32 {
			if base == "" {
				return false
			}
			if base == sdisk {
				return true
			}
			vm, s, ok := snapshot.DiskOf(home, base)
			if !ok {
				return false
			}
			m, err := snapshot.Read(snapshot.Dir(layout.VMDir(home, vm), s), snapshot.SnapManifest)
			if err != nil {
				return false
			}
			base = m.DiskParent
		}
		return false
	}
	d.mu.Lock()
	var names []string
	for n := range d.vms {
		names = append(names, n)
	}
	d.mu.Unlock()
	sort.Strings(names)
	var out []string
	for _, n := range names {
		dir := layout.VMDir(home, n)
		ds, _ := snapshot.ReadDiskState(dir)
		if onChain(ds.Base) {
			if n == name {
				out = append(out, n+" (its own disk, which sits on the snapshot)")
			} else {
				out = append(out, n)
			}
		} else if m, err := snapshot.Read(dir, snapshot.ManifestName); err == nil && (strings.HasPrefix(m.State.Path, sdir+"/") || (m.Memory != nil && strings.HasPrefix(m.Memory.Path, sdir+"/"))) {
			out = append(out, n)
		}
		others, _ := listSnapshots(dir)
		for _, o := range others {
			if n == name && o == snap {
				continue
			}
			if m, err := snapshot.Read(snapshot.Dir(dir, o), snapshot.SnapManifest); err == nil && onChain(m.DiskParent) {
				out = append(out, n+"/"+o+" (snapshot)")
			}
		}
	}
	return out
}

// removeSnapshot removes snapshot snap of v, unless something needs it.
func (d *Daemon) removeSnapshot(ctx context.Context, v *vm, snap string) error {
	if err := v.op.lock(ctx); err != nil {
		return errorc(http.StatusConflict, api.CodeBusy, "VM %s is busy with another operation: %v", v.name, err)
	}
	defer v.op.unlock()
	dir := snapshot.Dir(v.dir, snap)
	if _, err := os.Lstat(filepath.Join(dir, snapshot.SnapManifest)); err != nil {
		return errorc(http.StatusNotFound, api.CodeNotFound, "VM %s has no snapshot %q: list them with `mb snapshot ls %s`", v.name, snap, v.name)
	}
	deps := d.dependents(v.name, snap)
	if len(deps) == 1 && strings.HasPrefix(deps[0], v.name+" ") {
		// Only the VM's own disk sits on it: merged into the disk first.
		if err := d.mergeOwnDisk(ctx, v, dir); err != nil {
			return err
		}
		deps = nil
	}
	if len(deps) > 0 {
		return errorc(http.StatusConflict, api.CodeConflict, "snapshot %s of VM %s is in use by %s: remove those first (mb rm), or keep the snapshot", snap, v.name, strings.Join(deps, ", "))
	}
	// Renamed away first, so a half-removed snapshot is never listed.
	gone := filepath.Join(v.dir, snapshot.SnapshotsDir, "."+snap+".rm")
	_ = os.RemoveAll(gone)
	if err := os.Rename(dir, gone); err != nil {
		return fmt.Errorf("remove snapshot %s: %w", snap, err)
	}
	if err := os.RemoveAll(gone); err != nil {
		return fmt.Errorf("remove snapshot %s: %w", snap, err)
	}
	d.log.Info("snapshot removed", "vm", v.name, "snapshot", snap)
	return nil
}

// prepareFrom sets v up to start from snapshot snap: a new disk overlay on
// the snapshot's disk (the VM's current disk is discarded) and a restore
// manifest naming the snapshot's state and memory. The caller holds v.op
// and v is not running.
func (d *Daemon) prepareFrom(v *vm, snap string) error {
	if err := spec.ValidateName(snap); err != nil {
		return errorf(http.StatusBadRequest, "snapshot name: %v", err)
	}
	return d.restoreInto(v, v.dir, snap, "")
}

// restoreInto prepares the VM directory dir to start from snapshot snap of
// src; hostname, when set, is told to the guest after the restore (a
// clone).
func (d *Daemon) restoreInto(src *vm, dir, snap, hostname string) error {
	sdir := snapshot.Dir(src.dir, snap)
	m, err := snapshot.Read(sdir, snapshot.SnapManifest)
	if errors.Is(err, os.ErrNotExist) {
		return errorc(http.StatusNotFound, api.CodeNotFound, "VM %s has no snapshot %q: list them with `mb snapshot ls %s`", src.name, snap, src.name)
	}
	if err != nil {
		return err
	}
	if err := m.Verify(sdir); err != nil {
		return errorf(http.StatusConflict, "snapshot %s of VM %s: %v", snap, src.name, err)
	}
	if err := snapshot.Discard(dir); err != nil {
		return err
	}
	if m.Disk != nil {
		frozen := m.Disk.Resolve(sdir)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := disk.CreateOverlayOn(ctx, filepath.Join(dir, disk.OverlayFile), frozen, m.DiskVirtualSize)
		cancel()
		if err != nil {
			return err
		}
		if err := snapshot.WriteDiskState(dir, snapshot.DiskState{Base: frozen}); err != nil {
			return err
		}
	}
	r := *m
	r.Kind, r.CloneHostname = "restore", hostname
	r.State.Path = m.State.Resolve(sdir)
	if m.Memory != nil {
		mem := *m.Memory
		mem.Path = m.Memory.Resolve(sdir)
		r.Memory = &mem
	}
	if m.Disk != nil {
		dk := *m.Disk
		dk.Path = m.Disk.Resolve(sdir)
		r.Disk = &dk
	}
	if err := snapshot.Write(dir, snapshot.ManifestName, &r); err != nil {
		return err
	}
	d.log.Info("prepared a restore from a snapshot", "dir", dir, "vm", src.name, "snapshot", snap)
	return nil
}

// cloneVM makes VM req.Name from a snapshot of v (a new one of the running
// v when req.From is empty) and starts it: its disk is an overlay on the
// snapshot's disk, its memory the snapshot's, mapped copy-on-write, and
// the guest is told its new hostname and given fresh entropy.
func (d *Daemon) cloneVM(ctx context.Context, v *vm, req api.CloneRequest) (api.VM, error) {
	if err := spec.ValidateName(req.Name); err != nil {
		return api.VM{}, errorf(http.StatusBadRequest, "clone name: %v", err)
	}
	if err := refuseShares(v, "cloned"); err != nil {
		return api.VM{}, err
	}
	if d.lookup(req.Name) != nil {
		return api.VM{}, errorc(http.StatusConflict, api.CodeExists, "VM %s already exists: pick another name for the clone, or remove it first (mb rm %s)", req.Name, req.Name)
	}
	snap := req.From
	if snap == "" {
		snap = "clone-" + req.Name
		if _, err := d.saveSnapshot(ctx, v, snap, 0); err != nil {
			return api.VM{}, err
		}
	}
	v.mu.Lock()
	s := v.spec
	v.mu.Unlock()
	if s == nil {
		return api.VM{}, errorf(http.StatusConflict, "VM %s has no valid spec to clone", v.name)
	}
	ns := *s
	ns.Name, ns.SSHPort, ns.Forwards = req.Name, 0, nil
	doc, err := ns.Marshal()
	if err != nil {
		return api.VM{}, err
	}
	nv, err := d.createVM(doc)
	if err != nil {
		return api.VM{}, err
	}
	fail := func(err error) (api.VM, error) {
		if derr := d.deleteVM(context.WithoutCancel(ctx), nv, true); derr != nil {
			d.log.Warn("cannot remove a failed clone", "vm", req.Name, "err", derr)
		}
		return api.VM{}, err
	}
	// The guest keeps the source's SSH host key and authorized key (they
	// are in its disk and memory): the clone's directory gets the same.
	for _, f := range []string{sshkeys.ClientKeyFile, sshkeys.ClientPubFile, sshkeys.HostKeyFile, sshkeys.HostPubFile, disk.VarsFile} {
		if err := copyIfExists(filepath.Join(v.dir, f), filepath.Join(nv.dir, f)); err != nil {
			return fail(fmt.Errorf("clone %s: %w", req.Name, err))
		}
	}
	if err := nv.op.lock(ctx); err != nil {
		return fail(err)
	}
	err = d.restoreInto(v, nv.dir, snap, req.Name)
	nv.op.unlock()
	if err != nil {
		return fail(err)
	}
	d.log.Info("cloned VM", "vm", req.Name, "from", v.name, "snapshot", snap)
	if _, err := d.startVM(ctx, nv, time.Duration(req.TimeoutSeconds)*time.Second, false); err != nil {
		return api.VM{}, err
	}
	return d.view(ctx, nv, false), nil
}

// copyIfExists copies a small regular file (0600), nothing when src does
// not exist.
func copyIfExists(src, dst string) error {
	f, err := os.OpenFile(src, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() || st.Size() > 64<<20 {
		return fmt.Errorf("%s is not a small regular file", src)
	}
	data := make([]byte, st.Size())
	if _, err := f.ReadAt(data, 0); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := out.Write(data); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// refuseRemoveWithUsers refuses to remove v while other VMs, or other VMs'
// snapshots, sit on the disk of one of its snapshots.
func (d *Daemon) refuseRemoveWithUsers(v *vm) error {
	snaps, _ := listSnapshots(v.dir)
	var users []string
	for _, s := range snaps {
		for _, dep := range d.dependents(v.name, s) {
			if dep != v.name && !strings.HasPrefix(dep, v.name+"/") && !strings.HasPrefix(dep, v.name+" ") {
				users = append(users, dep)
			}
		}
	}
	if len(users) == 0 {
		return nil
	}
	sort.Strings(users)
	return errorc(http.StatusConflict, api.CodeConflict, "VM %s cannot be removed: its snapshots hold the disks of %s; remove those first", v.name, strings.Join(slices.Compact(users), ", "))
}

// mergeOwnDisk moves the stopped VM v's disk overlay off snapshot sdir's
// disk, onto what that disk sits on (an earlier snapshot's disk or the
// image), copying what the guest sees; then the snapshot can go.
func (d *Daemon) mergeOwnDisk(ctx context.Context, v *vm, sdir string) error {
	if v.current() != nil {
		return errorc(http.StatusConflict, api.CodeRunning, "VM %s's disk sits on this snapshot: stop the VM first (mb stop %s), and the snapshot's disk is merged into the VM's on removal", v.name, v.name)
	}
	m, err := snapshot.Read(sdir, snapshot.SnapManifest)
	if err != nil {
		return err
	}
	base, format := m.DiskParent, "qcow2"
	if base == "" {
		v.mu.Lock()
		im := v.manifest
		v.mu.Unlock()
		if im == nil || im.Disk == "" {
			return fmt.Errorf("VM %s: its image is not loaded, so its disk cannot be moved off the snapshot", v.name)
		}
		base, format = im.Path(im.Disk), im.Format
	}
	if err := snapshot.Settle(v.dir); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := disk.Rebase(rctx, v.file(disk.OverlayFile), base, format); err != nil {
		return err
	}
	st := snapshot.DiskState{}
	if m.DiskParent != "" {
		st.Base = m.DiskParent
	}
	if err := snapshot.WriteDiskState(v.dir, st); err != nil {
		return err
	}
	d.log.Info("merged a snapshot's disk into the VM's", "vm", v.name, "snapshot", m.Name)
	return nil
}

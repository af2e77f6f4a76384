package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mbvm/mb/vm/disk"
	"github.com/mbvm/mb/vm/snapshot"
	"github.com/mbvm/mb/vm/spec"
	"github.com/mbvm/mb/vmhost"
)

// Snapshot implements vmhost.Snapshotter: the guest is paused only while
// its device state is saved, its RAM copied and its disk frozen (a new
// overlay becomes the VM's disk; the old one, read-only from then on, is
// the snapshot's), then it runs on. The snapshot appears complete under
// snapshots/NAME or not at all.
func (c *Controller) Snapshot(ctx context.Context, name string) (*snapshot.Manifest, error) {
	if err := spec.ValidateName(name); err != nil {
		return nil, vmhost.WithCode(vmhost.CodeBadRequest, fmt.Errorf("snapshot name: %w", err))
	}
	if c.hasShares() {
		return nil, vmhost.WithCode(vmhost.CodeNotAvailable, errors.New("this VM has host folder shares (virtiofs), whose state QEMU cannot save: it cannot be suspended or snapshotted"))
	}
	drive, err := c.snapshotDrive()
	if err != nil {
		return nil, err
	}
	c.stopMu.Lock()
	defer c.stopMu.Unlock()
	if st := c.State(); st != vmhost.StateRunning {
		return nil, vmhost.WithCode(vmhost.CodeNotAvailable, fmt.Errorf("the VM is %s, not running: only a running VM can be snapshotted", st))
	}
	root := filepath.Join(c.cfg.Dir, snapshot.SnapshotsDir)
	if err := os.Mkdir(root, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, err
	}
	if st, err := os.Lstat(root); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%s is not a directory: remove it", root)
	}
	final := filepath.Join(root, name)
	if _, err := os.Lstat(filepath.Join(final, snapshot.SnapManifest)); err == nil {
		return nil, vmhost.WithCode(vmhost.CodeBadRequest, fmt.Errorf("snapshot %s exists: remove it first (mb snapshot rm %s %s)", name, c.cfg.Name, name))
	}
	if ds, err := snapshot.ReadDiskState(c.cfg.Dir); err != nil {
		return nil, err
	} else if strings.HasPrefix(ds.Base, final+"/") {
		return nil, vmhost.WithCode(vmhost.CodeBadRequest, fmt.Errorf("%s is an incomplete snapshot that the VM's disk sits on: pick another name", final))
	}
	// A directory without a manifest is an interrupted snapshot.
	if err := os.RemoveAll(final); err != nil {
		return nil, err
	}
	if err := os.Mkdir(final, 0o700); err != nil {
		return nil, err
	}
	frozen := false // once the disk is frozen the directory must stay
	defer func() {
		if !frozen {
			_ = os.RemoveAll(final)
		}
	}()
	mon, err := c.monitorOrErr()
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	if _, err := mon.run(ctx, "stop"); err != nil {
		return nil, err
	}
	defer func() {
		if _, err := mon.run(context.WithoutCancel(ctx), "cont"); err != nil {
			c.log.Error("cannot resume the guest after a snapshot", "err", err)
		}
	}()
	m := &snapshot.Manifest{Kind: "snapshot", Name: name, VM: c.cfg.Name, Machine: machineOf(c.cfg, c.bin)}
	// The disk first: the migration that saves the device state leaves
	// the block devices inactive until cont.
	if drive != "" {
		if m.Disk, m.DiskVirtualSize, m.DiskParent, err = c.freezeDisk(ctx, mon, drive, final); err != nil {
			return nil, err
		}
		frozen = true
	}
	if m.State, m.RAM, err = c.saveState(ctx, filepath.Join(final, snapshot.SnapState)); err != nil {
		return nil, err
	}
	if m.RAM == snapshot.RAMFile {
		size, err := c.copyMemory(filepath.Join(final, snapshot.SnapMemory))
		if err != nil {
			return nil, fmt.Errorf("copy the guest memory: %w", err)
		}
		m.Memory = &snapshot.File{Path: snapshot.SnapMemory, Size: size}
	}
	m.CreatedAt = time.Now().UTC()
	// The manifest last: a snapshot without one is incomplete.
	if err := snapshot.Write(final, snapshot.SnapManifest, m); err != nil {
		return nil, err
	}
	frozen = true
	if err := snapshot.SyncDir(root); err != nil {
		return nil, err
	}
	c.log.Info("snapshot taken", "snapshot", name, "ram", m.RAM, "paused", time.Since(t0).Round(time.Millisecond))
	return m, nil
}

// snapshotDrive is the QEMU drive id of the VM's own disk overlay
// (virtio0, dir/disk.qcow2), "" for a VM without a disk. A VM that boots
// from a disk file of its own (spec disk:) is refused: mb cannot freeze a
// file it does not own.
func (c *Controller) snapshotDrive() (string, error) {
	if len(c.cfg.Drives) == 0 {
		return "", nil
	}
	if c.cfg.Drives[0].Path != filepath.Join(c.cfg.Dir, disk.OverlayFile) {
		return "", vmhost.WithCode(vmhost.CodeNotAvailable, fmt.Errorf("the VM boots from its own disk file %s, which mb cannot freeze: snapshots need a VM made from an image", c.cfg.Drives[0].Path))
	}
	return "virtio0", nil
}

// freezeDisk makes the paused VM's disk overlay the snapshot's read-only
// disk and has QEMU write a new overlay on it from now on: the overlay is
// linked into the snapshot directory as disk.qcow2, a new overlay
// (.disk.N.qcow2) is made on that link, disk.base.json records both, and
// QEMU switches to it (blockdev-snapshot-sync, mode existing). No file
// QEMU holds is renamed while it runs (it reopens images by name); the new
// overlay becomes disk.qcow2 before the next start (snapshot.Settle). It
// returns the snapshot's disk, its virtual size and the snapshot disk the
// frozen overlay itself sits on.
func (c *Controller) freezeDisk(ctx context.Context, mon *monitor, drive, final string) (*snapshot.File, int64, string, error) {
	dir := c.cfg.Dir
	was, err := snapshot.ReadDiskState(dir)
	if err != nil {
		return nil, 0, "", err
	}
	cur := filepath.Join(dir, disk.OverlayFile)
	if was.Active != "" {
		cur = filepath.Join(dir, was.Active)
	}
	size, err := c.virtualSize(ctx, mon, drive)
	if err != nil {
		return nil, 0, "", err
	}
	frozen := filepath.Join(final, snapshot.SnapDisk)
	if err := os.Link(cur, frozen); err != nil {
		return nil, 0, "", fmt.Errorf("link the disk into the snapshot: %w", err)
	}
	nextName := fmt.Sprintf(".disk.%d.qcow2", time.Now().UnixNano())
	next := filepath.Join(dir, nextName)
	undo := func() {
		_ = snapshot.WriteDiskState(dir, was)
		_ = os.Remove(next)
		_ = os.Remove(frozen)
	}
	if err := disk.CreateOverlayOn(ctx, next, frozen, size); err != nil {
		undo()
		return nil, 0, "", err
	}
	// Recorded before QEMU switches: a crash in between leaves a VM that
	// boots on the new (empty) overlay, the disk as it was paused.
	if err := snapshot.WriteDiskState(dir, snapshot.DiskState{Base: frozen, Active: nextName}); err != nil {
		undo()
		return nil, 0, "", err
	}
	args := map[string]any{"device": drive, "snapshot-file": next, "format": "qcow2", "mode": "existing"}
	if _, err := mon.runArgs(ctx, "blockdev-snapshot-sync", args); err != nil {
		undo()
		return nil, 0, "", fmt.Errorf("freeze the disk: %w", err)
	}
	if err := os.Chmod(frozen, 0o400); err != nil {
		return nil, 0, "", err
	}
	st, err := os.Stat(frozen)
	if err != nil {
		return nil, 0, "", err
	}
	return &snapshot.File{Path: snapshot.SnapDisk, Size: st.Size()}, size, was.Base, nil
}

// virtualSize is the disk size QEMU reports for drive.
func (c *Controller) virtualSize(ctx context.Context, mon *monitor, drive string) (int64, error) {
	out, err := mon.run(ctx, "query-block")
	if err != nil {
		return 0, err
	}
	var blocks []struct {
		Device   string `json:"device"`
		Inserted *struct {
			Image struct {
				VirtualSize int64 `json:"virtual-size"`
			} `json:"image"`
		} `json:"inserted"`
	}
	if err := json.Unmarshal(out, &blocks); err != nil {
		return 0, fmt.Errorf("QMP query-block: bad reply: %w", err)
	}
	for _, b := range blocks {
		if b.Device == drive && b.Inserted != nil {
			return b.Inserted.Image.VirtualSize, nil
		}
	}
	return 0, fmt.Errorf("QMP query-block: no drive %s", drive)
}

// copyMemory copies the running VM's RAM (its memfd or its memory.ram)
// to a new file dst and returns the size.
func (c *Controller) copyMemory(dst string) (int64, error) {
	if c.cfg.Warm.RAM != nil {
		return copySparseFrom(c.cfg.Warm.RAM, dst)
	}
	in, err := os.OpenFile(c.cfg.Warm.MemPath, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	return copySparseFrom(in, dst)
}

// copySparseFrom copies in (from its start, whatever its offset) to a new
// file dst (0600), leaving holes where in has zeros, syncs it and returns
// the size.
func copySparseFrom(in io.ReaderAt, dst string) (int64, error) {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return 0, err
	}
	defer out.Close()
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	var off int64
	for {
		n, err := in.ReadAt(buf, off)
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			if _, werr := out.WriteAt(buf[:n], off); werr != nil {
				return 0, werr
			}
		}
		off += int64(n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	if err := out.Truncate(off); err != nil {
		return 0, err
	}
	if err := out.Sync(); err != nil {
		return 0, err
	}
	return off, nil
}

// onSnapshotDisk points o at the snapshot disk the VM's overlay sits on,
// when disk.base.json names one, after checking the chain: every link
// below the VM's overlay is a snapshot disk under $MB_HOME/vms (an overlay
// mb made), qcow2 with its backing format pinned, down to the image's
// base with the image's format. Nothing else may be a backing file.
func onSnapshotDisk(ctx context.Context, dir string, o *disk.Overlay) error {
	if err := snapshot.Settle(dir); err != nil {
		return err
	}
	ds, err := snapshot.ReadDiskState(dir)
	if err != nil || ds.Base == "" {
		return err
	}
	base := ds.Base
	home := filepath.Dir(filepath.Dir(dir))
	imageBase, err := filepath.Abs(o.Base)
	if err != nil {
		return err
	}
	p := base
	for range 16 {
		if _, _, ok := snapshot.DiskOf(home, p); !ok {
			return fmt.Errorf("disk chain of %s: %s is not a snapshot disk under %s: mb refuses other backing files; recreate the VM", dir, p, filepath.Join(home, "vms"))
		}
		if st, err := os.Lstat(p); err != nil {
			return fmt.Errorf("disk chain of %s: the snapshot disk %s: %w (was the snapshot removed?)", dir, p, err)
		} else if !st.Mode().IsRegular() {
			return fmt.Errorf("disk chain of %s: %s is not a regular file", dir, p)
		}
		info, err := disk.ReadInfo(ctx, p, "qcow2")
		if err != nil {
			return err
		}
		next := info.FullBackingFilename
		if next == "" {
			next = info.BackingFilename
		}
		if next == imageBase {
			if o.BaseFormat != "" && info.BackingFilenameFormat != o.BaseFormat {
				return fmt.Errorf("disk chain of %s: %s reads the image as %q, the image is %s", dir, p, info.BackingFilenameFormat, o.BaseFormat)
			}
			o.Base, o.BaseFormat, o.BaseIsOverlay = base, "qcow2", true
			return nil
		}
		if info.BackingFilenameFormat != "qcow2" {
			return fmt.Errorf("disk chain of %s: %s sits on %s as %q, not on a snapshot disk", dir, p, next, info.BackingFilenameFormat)
		}
		p = next
	}
	return fmt.Errorf("disk chain of %s: longer than 16 snapshot disks", dir)
}

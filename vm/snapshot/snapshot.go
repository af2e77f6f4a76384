// Package snapshot is the on-disk format of a VM's saved state: the
// manifest that says what was saved, by which QEMU and for which machine,
// and the checks a restore runs before it trusts the files.
//
// A suspended VM keeps its state in the VM directory: suspend.json (the
// manifest), suspend.state (device state, a QEMU migration stream) and
// memory.ram (the guest's RAM, which QEMU maps as guest memory on the
// resume). A
// named snapshot keeps the same files, plus the disk it froze, under
// snapshots/NAME. The manifest is written last, so a state without one is
// incomplete and never restored.
package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mbvm/mb/internal/atomicfile"
)

// File names in a VM directory and in a snapshot directory.
const (
	// ManifestName is the suspend manifest in the VM directory.
	ManifestName = "suspend.json"
	// StateName is the suspended VM's device state.
	StateName = "suspend.state"
	// MemoryName is the guest RAM file of a suspended VM (live while a
	// resumed VM runs on it).
	MemoryName = "memory.ram"
	// SnapshotsDir holds a VM's named snapshots, one directory each.
	SnapshotsDir = "snapshots"
	// SnapManifest, SnapState, SnapMemory and SnapDisk are the files of
	// one named snapshot.
	SnapManifest = "manifest.json"
	SnapState    = "state"
	SnapMemory   = "memory.ram"
	SnapDisk     = "disk.qcow2"
)

// Format is the manifest format this mb writes and reads.
const Format = 1

// RAM modes: where a restore finds the guest's memory.
const (
	// RAMFile: the memory is the file Memory names, mapped by QEMU; the
	// state stream holds devices only.
	RAMFile = "file"
	// RAMStream: the memory is inside the state stream.
	RAMStream = "stream"
)

// Machine is what a saved state is tied to: a restore on anything else is
// refused.
type Machine struct {
	Backend     string `json:"backend"`
	QEMUVersion string `json:"qemu_version,omitempty"`
	Machine     string `json:"machine"`
	Arch        string `json:"arch"`
	Accel       string `json:"accel,omitempty"`
	CPUs        int    `json:"cpus"`
	MemoryMiB   uint64 `json:"memory_mib"`
}

// File is one saved file and what it must look like.
type File struct {
	// Path is absolute, or relative to the manifest's directory.
	Path string `json:"path"`
	Size int64  `json:"size"`
	// SHA256 is set for the (small) device state.
	SHA256 string `json:"sha256,omitempty"`
}

// Manifest describes one saved state.
type Manifest struct {
	Format    int       `json:"format"`
	Kind      string    `json:"kind"` // "suspend" or "snapshot"
	Name      string    `json:"name,omitempty"`
	VM        string    `json:"vm"`
	CreatedAt time.Time `json:"created_at"`
	Machine   Machine   `json:"machine"`
	RAM       string    `json:"ram"`
	State     File      `json:"state"`
	Memory    *File     `json:"memory,omitempty"`
	// Disk is the snapshot's frozen disk (a read-only qcow2), when the VM
	// has a disk.
	Disk *File `json:"disk,omitempty"`
	// DiskVirtualSize is the guest-visible size of Disk.
	DiskVirtualSize int64 `json:"disk_virtual_size,omitempty"`
	// DiskParent is the snapshot disk that Disk sits on ("" for the
	// image), so that the chain is known without opening the disks.
	DiskParent string `json:"disk_parent,omitempty"`
	// CloneHostname, when set, is told to the guest after a restore.
	CloneHostname string `json:"clone_hostname,omitempty"`
}

// Write writes m as dir/name: a temporary file, synced and renamed, then
// the directory synced, so the manifest is either complete or absent.
func Write(dir, name string, m *Manifest) error {
	m.Format = Format
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	p := filepath.Join(dir, name)
	if err := atomicfile.Write(p, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return SyncDir(dir)
}

// Read reads dir/name. A missing manifest is an error wrapping
// os.ErrNotExist.
func Read(dir, name string) (*Manifest, error) {
	p := filepath.Join(dir, name)
	f, err := os.OpenFile(p, os.O_RDONLY|noFollow, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s is damaged (%v): start with --cold to boot afresh", p, err)
	}
	if m.Format != Format {
		return nil, fmt.Errorf("%s has format %d, this mb reads %d: start with --cold to boot afresh", p, m.Format, Format)
	}
	return &m, nil
}

// Suspended reports whether dir holds a complete suspend manifest.
func Suspended(dir string) bool {
	st, err := os.Lstat(filepath.Join(dir, ManifestName))
	return err == nil && st.Mode().IsRegular()
}

// Resolve returns f's path, relative paths taken from dir.
func (f File) Resolve(dir string) string {
	if filepath.IsAbs(f.Path) {
		return f.Path
	}
	return filepath.Join(dir, f.Path)
}

// Verify checks that the files m names exist, are regular files of the
// recorded sizes, and that the state's checksum matches. dir is where
// relative paths start.
func (m *Manifest) Verify(dir string) error {
	if err := checkFile(dir, m.State, true); err != nil {
		return err
	}
	if m.Memory != nil {
		if err := checkFile(dir, *m.Memory, false); err != nil {
			return err
		}
	}
	if m.Disk != nil {
		if err := checkFile(dir, *m.Disk, false); err != nil {
			return err
		}
	}
	if m.RAM == RAMFile && m.Memory == nil {
		return errors.New("the saved state names no memory file: start with --cold to boot afresh")
	}
	return nil
}

func checkFile(dir string, f File, hash bool) error {
	p := f.Resolve(dir)
	fh, err := os.OpenFile(p, os.O_RDONLY|noFollow, 0)
	if err != nil {
		return fmt.Errorf("saved state file %s: %w: start with --cold to boot afresh", p, err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return fmt.Errorf("saved state file %s: %w", p, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("saved state file %s is not a regular file: start with --cold to boot afresh", p)
	}
	if st.Size() != f.Size {
		return fmt.Errorf("saved state file %s is damaged: %d bytes, the manifest says %d (truncated?): start with --cold to boot afresh (the saved state is then discarded)", p, st.Size(), f.Size)
	}
	if hash && f.SHA256 != "" {
		sum, err := HashFile(fh)
		if err != nil {
			return fmt.Errorf("saved state file %s: %w", p, err)
		}
		if sum != f.SHA256 {
			return fmt.Errorf("saved state file %s is damaged: its checksum does not match the manifest: start with --cold to boot afresh (the saved state is then discarded)", p)
		}
	}
	return nil
}

// HashFile returns the hex SHA-256 of r's content.
func HashFile(r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Compatible says why a state saved on m cannot be restored on now, or
// nil when it can. The message names every difference and says that
// --cold boots instead.
func Compatible(saved, now Machine) error {
	var diffs []string
	add := func(what, a, b string) {
		if a != b {
			diffs = append(diffs, fmt.Sprintf("%s %s (saved) vs %s (now)", what, a, b))
		}
	}
	add("backend", saved.Backend, now.Backend)
	add("QEMU version", saved.QEMUVersion, now.QEMUVersion)
	add("machine type", saved.Machine, now.Machine)
	add("architecture", saved.Arch, now.Arch)
	add("accelerator", saved.Accel, now.Accel)
	add("cpus", fmt.Sprint(saved.CPUs), fmt.Sprint(now.CPUs))
	add("memory", fmt.Sprintf("%d MiB", saved.MemoryMiB), fmt.Sprintf("%d MiB", now.MemoryMiB))
	if len(diffs) == 0 {
		return nil
	}
	return fmt.Errorf("the saved state does not match this VM (%s): it cannot be restored; start with --cold to boot afresh (the saved state is then discarded)", strings.Join(diffs, ", "))
}

// SyncDir fsyncs a directory, so that renames in it survive a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// Discard removes the suspend manifest first (so the state is never
// restored even if the rest fails), then the state file.
func Discard(dir string) error {
	if err := os.Remove(filepath.Join(dir, ManifestName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("discard the saved state: %w", err)
	}
	_ = SyncDir(dir)
	if err := os.Remove(filepath.Join(dir, StateName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("discard the saved state: %w", err)
	}
	return nil
}

// DiskBaseName, in a VM directory, records the snapshot disk the VM's
// disk overlay sits on (when it sits on one rather than on its image), and
// the overlay QEMU writes when a snapshot switched it while the VM ran.
const DiskBaseName = "disk.base.json"

// DiskState is the content of DiskBaseName.
type DiskState struct {
	// Base is the snapshot disk under the VM's overlay, "" for the image.
	Base string `json:"base,omitempty"`
	// Active, when set, is the file name in the VM directory of the
	// overlay QEMU writes since a snapshot; it becomes disk.qcow2 before
	// the next start (files QEMU holds open are never renamed).
	Active string `json:"active,omitempty"`
}

// WriteDiskState writes dir's DiskBaseName atomically (0600).
func WriteDiskState(dir string, st DiskState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, DiskBaseName), append(b, '\n'), 0o600); err != nil {
		return err
	}
	return SyncDir(dir)
}

// ReadDiskState reads dir's DiskBaseName; none is the zero DiskState.
func ReadDiskState(dir string) (DiskState, error) {
	var st DiskState
	p := filepath.Join(dir, DiskBaseName)
	f, err := os.OpenFile(p, os.O_RDONLY|noFollow, 0)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	defer f.Close()
	if err := json.NewDecoder(io.LimitReader(f, 1<<16)).Decode(&st); err != nil {
		return st, fmt.Errorf("%s is damaged: %w", p, err)
	}
	if st.Active != "" && (st.Active != filepath.Base(st.Active) || !strings.HasPrefix(st.Active, ".disk.")) {
		return st, fmt.Errorf("%s names %q as the active disk: not a file mb made", p, st.Active)
	}
	return st, nil
}

// Dir is the directory of snapshot snap of the VM whose directory is
// vmDir.
func Dir(vmDir, snap string) string { return filepath.Join(vmDir, SnapshotsDir, snap) }

// DiskOf splits a snapshot disk path under home (home/vms/VM/snapshots/
// SNAP/disk.qcow2) into the VM and snapshot names; ok is false for any
// other path.
func DiskOf(home, p string) (vm, snap string, ok bool) {
	rel, err := filepath.Rel(filepath.Join(home, "vms"), p)
	if err != nil {
		return "", "", false
	}
	parts := strings.Split(rel, string(filepath.Separator))
	if len(parts) != 4 || parts[1] != SnapshotsDir || parts[3] != SnapDisk || parts[0] == ".." || parts[0] == "" || parts[2] == "" || strings.HasPrefix(parts[2], ".") {
		return "", "", false
	}
	return parts[0], parts[2], true
}

// InSnapshot reports whether p lies in a snapshot directory under home
// (home/vms/VM/snapshots/SNAP/FILE).
func InSnapshot(home, p string) bool {
	rel, err := filepath.Rel(filepath.Join(home, "vms"), filepath.Clean(p))
	if err != nil {
		return false
	}
	parts := strings.Split(rel, string(filepath.Separator))
	return len(parts) == 4 && parts[0] != ".." && parts[0] != "" && parts[1] == SnapshotsDir && parts[2] != "" && !strings.HasPrefix(parts[2], ".")
}

// Settle, while QEMU does not run, makes the overlay a snapshot switched
// the VM to (DiskState.Active) its disk.qcow2 and removes the other names
// earlier switches left (links to snapshot disks, which keep their own).
func Settle(dir string) error {
	st, err := ReadDiskState(dir)
	if err != nil {
		return err
	}
	if st.Active != "" {
		err := os.Rename(filepath.Join(dir, st.Active), filepath.Join(dir, "disk.qcow2"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("settle the disk after a snapshot: %w", err)
		}
		st.Active = ""
		if err := WriteDiskState(dir, st); err != nil {
			return err
		}
	}
	old, _ := filepath.Glob(filepath.Join(dir, ".disk.*.qcow2"))
	for _, p := range old {
		_ = os.Remove(p)
	}
	return nil
}

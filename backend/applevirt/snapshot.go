package applevirt

import "context"

// stateSaver is where warm start (mb suspend, snapshots, clones) plugs
// into this backend; the QEMU backend implements it today. On macOS 14
// and later the darwin && cgo build's vzMachine can implement it with vz
// v3.7.1's (*vz.VirtualMachine).SaveMachineStateToPath and
// RestoreMachineStateFromURL (arm64 only; the configuration's
// ValidateSaveRestoreSupport says whether a VM can be saved, and the VM
// must be paused first). With it, Controller implements vmhost.Suspender:
// pause, SaveState to vm/snapshot.StateName in the VM directory, write
// the manifest with vm/snapshot.Write (Machine.Backend "applevirt", the
// CPUs and memory, the state's size and SHA-256) last, then stop; and
// Start checks snapshot.Read/Compatible/Verify and calls RestoreState
// (then resumes) instead of booting when snapshot.Suspended(dir). Shares
// (virtio-fs) are refused as for QEMU until the framework is known to
// save them.
type stateSaver interface {
	// SaveState writes the paused machine's memory and device state to
	// path.
	SaveState(ctx context.Context, path string) error
	// RestoreState loads path into a machine built from the same
	// configuration, which is then paused.
	RestoreState(ctx context.Context, path string) error
}

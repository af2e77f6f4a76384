package applevirt

import (
	"path/filepath"

	"github.com/mbvm/mb/internal/layout"
)

// Files the backend keeps in a VM's directory, beside what internal/layout
// names for every backend.
const (
	// DiskFile is the VM's raw root disk, converted from the image's qcow2
	// (qemu-img convert -O raw); Apple Virtualization reads raw disks only.
	DiskFile = "disk.raw"
	// EFIVarsFile is the EFI variable store of a disk boot.
	EFIVarsFile = "efi-vars.fd"
	// MachineIDFile holds the generic machine identifier, kept so that the
	// guest sees the same machine at every boot.
	MachineIDFile = "machine-id.bin"
	// SerialLogFile receives the guest's console (hvc0).
	SerialLogFile = layout.SerialLog
	// AgentSockFile is the unix socket vmhost serves for the guest agent
	// client; each connection is relayed to the agent's vsock port.
	AgentSockFile = layout.AgentSocket
)

func vmPath(dir, name string) string { return filepath.Join(dir, name) }

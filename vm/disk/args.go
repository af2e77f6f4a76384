package disk

import "strings"

// Drive is a disk to attach to a QEMU VM.
type Drive struct {
	// Path is the image file.
	Path string
	// Format is qcow2 or raw.
	Format string
	// ReadOnly attaches it read-only (the cloud-init seed).
	ReadOnly bool
}

// DriveArgs returns the -drive arguments that attach drives as virtio
// block devices in order (/dev/vda, /dev/vdb, ...). Writable disks use
// discard=unmap, so space the guest frees returns to the host, and
// detect-zeroes=unmap to the same end for zeroed blocks.
func DriveArgs(drives ...Drive) []string {
	var args []string
	for _, d := range drives {
		opts := []string{"file=" + EscapeOpt(d.Path), "if=virtio", "format=" + d.Format}
		if d.ReadOnly {
			opts = append(opts, "readonly=on")
		} else {
			opts = append(opts, "discard=unmap", "detect-zeroes=unmap")
		}
		args = append(args, "-drive", strings.Join(opts, ","))
	}
	return args
}

// PflashArgs returns the -drive arguments for UEFI boot: the firmware code
// read-only in pflash unit 0 and the VM's own variable store in unit 1.
func PflashArgs(code, vars string) []string {
	return []string{
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + EscapeOpt(code),
		"-drive", "if=pflash,format=raw,unit=1,file=" + EscapeOpt(vars),
	}
}

// EscapeOpt escapes a value for a QEMU option list, where a comma must be
// doubled.
func EscapeOpt(s string) string { return strings.ReplaceAll(s, ",", ",,") }

package disk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// OverlayFile is the VM's disk file name inside its directory.
const OverlayFile = "disk.qcow2"

// Overlay describes a VM disk: a qcow2 file backed by a base image.
type Overlay struct {
	// Path is the overlay file, normally <vmdir>/disk.qcow2.
	Path string
	// Base is the base image; it is made absolute, so the overlay does not
	// depend on the directory QEMU runs in.
	Base string
	// BaseFormat is the base's format (qcow2 or raw), as stored when the
	// image came in; probed (see Probe) only when empty. The overlay pins
	// it (-F), so QEMU never guesses the base's format.
	BaseFormat string
	// Size is the disk's virtual size in bytes; 0 keeps the base's size.
	// It may grow an existing overlay, never shrink it.
	Size uint64
	// BaseIsOverlay says Base is itself an overlay mb made (a snapshot's
	// frozen disk) whose chain the caller has checked; it need not stand
	// alone.
	BaseIsOverlay bool
}

// Ensure creates the overlay when it does not exist yet (qemu-img create
// -f qcow2 -F FMT -b BASE, into a temporary file renamed into place), checks
// an existing one still sits on Base, and grows it to Size. The base image
// is only ever opened for reading.
func (o Overlay) Ensure(ctx context.Context) error {
	base, err := filepath.Abs(o.Base)
	if err != nil {
		return fmt.Errorf("disk overlay: resolve base %s: %w", o.Base, err)
	}
	if _, err := os.Stat(base); err != nil {
		return fmt.Errorf("disk overlay %s: base image: %w (re-pull or re-import the image)", o.Path, err)
	}
	format := o.BaseFormat
	if format == "" {
		bi, err := Probe(ctx, base)
		if err != nil {
			return fmt.Errorf("disk overlay %s: %w", o.Path, err)
		}
		format = bi.Format
	}
	if err := CheckFormat(format); err != nil {
		return fmt.Errorf("disk overlay %s: base image %s: %w", o.Path, base, err)
	}
	// The base itself must not pull in other files.
	if !o.BaseIsOverlay {
		if err := CheckStandalone(base, format); err != nil {
			return fmt.Errorf("disk overlay %s: %w", o.Path, err)
		}
	}
	// QEMU writes the overlay: it must be the VM's own file, not a link.
	if fi, err := os.Lstat(o.Path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("disk %s is not a regular file (%s): mb does not write through links in a VM directory: remove it (rm %s)", o.Path, fi.Mode().Type(), o.Path)
	}
	info, err := ReadInfo(ctx, o.Path, "qcow2")
	switch {
	case err == nil:
		if info.FullBackingFilename != base && info.BackingFilename != base {
			return fmt.Errorf("disk %s sits on %q, not on %s: the VM's image changed; delete the VM (or its disk) to start from the new image", o.Path, info.FullBackingFilename, base)
		}
		if info.BackingFilenameFormat != format {
			return fmt.Errorf("disk %s sits on %s read as %q, but the image is %s: delete the VM (or its disk) to start again", o.Path, base, info.BackingFilenameFormat, format)
		}
	case errors.Is(err, ErrMissingBacking):
		return err
	default:
		if _, statErr := os.Stat(o.Path); !errors.Is(statErr, os.ErrNotExist) {
			return err
		}
		if info, err = o.create(ctx, base, format); err != nil {
			return err
		}
	}
	if o.Size == 0 || int64(o.Size) == info.VirtualSize {
		return nil
	}
	if int64(o.Size) < info.VirtualSize {
		return fmt.Errorf("disk %s: disk_size %d bytes is smaller than the disk's %d bytes: disks only grow (raise disk_size, or recreate the VM)", o.Path, o.Size, info.VirtualSize)
	}
	if _, err := runQemuImg(ctx, "resize", "-f", "qcow2", o.Path, strconv.FormatUint(o.Size, 10)); err != nil {
		return fmt.Errorf("grow disk %s to %d bytes: %w", o.Path, o.Size, err)
	}
	return nil
}

// create makes the overlay in a temporary file and renames it into place,
// so a failure never leaves a half-made disk.
func (o Overlay) create(ctx context.Context, base, format string) (*Info, error) {
	tmp := filepath.Join(filepath.Dir(o.Path), "."+filepath.Base(o.Path)+".tmp")
	_ = os.Remove(tmp)
	if _, err := runQemuImg(ctx, "create", "-q", "-f", "qcow2", "-F", format, "-b", base, tmp); err != nil {
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("create disk overlay %s on %s: %w", o.Path, base, err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("create disk overlay %s: %w", o.Path, err)
	}
	info, err := ReadInfo(ctx, tmp, "qcow2")
	if err != nil {
		_ = os.Remove(tmp)
		return nil, err
	}
	if err := os.Rename(tmp, o.Path); err != nil {
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("create disk overlay %s: %w", o.Path, err)
	}
	return info, nil
}

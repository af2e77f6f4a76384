package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mbvm/mb/vm/cloudinit"
	"github.com/mbvm/mb/vm/disk"
	"github.com/mbvm/mb/vm/image"
	"github.com/mbvm/mb/vm/spec"
)

// resolveBoot turns a validated spec into a bootConfig: it loads the image
// when the spec names one and gives no kernel or disk of its own, checks that
// every file exists, adds mb.hostname to the kernel command line, and for a
// disk boot prepares the VM's disk overlay and UEFI variable store in dir.
// The accelerator and SSH port are filled in by the caller.
func resolveBoot(ctx context.Context, dir, mbHome string, s *spec.Spec, a arch) (*bootConfig, error) {
	if s.Memory.MiB() < 32 {
		return nil, fmt.Errorf("memory %s is too small: give at least 32M (for example 512M)", s.Memory)
	}
	if s.CPUs < 1 {
		return nil, fmt.Errorf("cpus %d: give at least 1", s.CPUs)
	}
	c := &bootConfig{
		Name:      s.Name,
		Dir:       dir,
		Arch:      a,
		CPUs:      s.CPUs,
		MemoryMiB: s.Memory.MiB(),
		Kernel:    s.Kernel,
		Initrd:    s.Initrd,
		SSHPort:   s.SSHPort,
		Forwards:  s.Forwards,
	}
	cmdline, extra := s.Cmdline, ""
	var m *image.Manifest
	if s.Kernel == "" && s.Disk == "" {
		if s.Image == "" {
			return nil, errors.New("nothing to boot: the spec names no image, kernel or disk (set image: mini, or kernel/disk)")
		}
		var err error
		if m, err = image.Load(mbHome, s.Image); err != nil {
			return nil, err
		}
		if m.Arch != "" && m.Arch != string(a) {
			return nil, fmt.Errorf("image %q is for %s, this host runs %s guests: use an image for %s", s.Image, m.Arch, a, a)
		}
		c.Kernel, c.Initrd = m.Path(m.Kernel), m.Path(m.Initrd)
		cmdline, extra = m.Cmdline, s.Cmdline
	}
	for _, f := range []struct{ what, path string }{{"kernel", c.Kernel}, {"initrd", c.Initrd}, {"disk", s.Disk}} {
		if f.path == "" {
			continue
		}
		if err := checkFile(f.path); err != nil {
			return nil, fmt.Errorf("%s file: %w", f.what, err)
		}
	}
	shares, err := resolveShares(s)
	if err != nil {
		return nil, err
	}
	c.Shares = shares
	if c.Kernel != "" {
		c.Cmdline = kernelCmdline(a, cmdline, strings.TrimSpace(extra+" "+sharesCmdline(shares)), s.Name)
	}
	if err := resolveDisk(ctx, c, s, m); err != nil {
		return nil, err
	}
	return c, nil
}

// resolveDisk attaches the boot disk: the spec's own disk as it is, or a
// qcow2 overlay (dir/disk.qcow2) on the image's base disk, which is never
// written. Without a kernel the disk boots through UEFI.
func resolveDisk(ctx context.Context, c *bootConfig, s *spec.Spec, m *image.Manifest) error {
	switch {
	case s.Disk != "":
		format, err := userDiskFormat(ctx, s)
		if err != nil {
			return err
		}
		c.Drives = []disk.Drive{{Path: s.Disk, Format: format}}
	case m != nil && m.Disk != "":
		o := disk.Overlay{Path: filepath.Join(c.Dir, disk.OverlayFile), Base: m.Path(m.Disk), BaseFormat: m.Format, Size: uint64(s.DiskSize)}
		if err := onSnapshotDisk(ctx, c.Dir, &o); err != nil { // snapshot_save.go
			return err
		}
		if err := o.Ensure(ctx); err != nil {
			return err
		}
		c.Drives = []disk.Drive{{Path: o.Path, Format: "qcow2"}}
	default:
		return nil
	}
	// A disk boots a distribution: give it its SSH keys and cloud-init seed.
	seed, err := cloudinit.PrepareVM(c.Dir, s)
	if err != nil {
		return err
	}
	c.Drives = append(c.Drives, disk.Drive{Path: seed, Format: "raw", ReadOnly: true})
	if c.Kernel != "" {
		return nil
	}
	fw, err := disk.FindFirmware("", string(c.Arch))
	if err != nil {
		return fmt.Errorf("a disk boot without a kernel needs UEFI firmware: %w", err)
	}
	vars, err := fw.EnsureVars(c.Dir)
	if err != nil {
		return err
	}
	c.FirmwareCode, c.FirmwareVars = fw.Code, vars
	return nil
}

// userDiskFormat is the format of the spec's own disk: the one the daemon
// stored at create (disk_format), never probed again, since the guest may
// have written anything into a raw disk, a qcow2 header naming a host file
// included. A qcow2 disk is checked to name no other file (the user may have
// replaced it on the host). A spec without disk_format (written before it
// existed, or vmhost run by hand) is probed, and a disk that names another
// file is refused.
func userDiskFormat(ctx context.Context, s *spec.Spec) (string, error) {
	if s.DiskFormat == "" {
		info, err := disk.Probe(ctx, s.Disk)
		if err != nil {
			return "", fmt.Errorf("disk %s: %w", s.Disk, err)
		}
		return info.Format, nil
	}
	if err := disk.CheckFormat(s.DiskFormat); err != nil {
		return "", fmt.Errorf("disk %s: %w", s.Disk, err)
	}
	if err := disk.CheckStandalone(s.Disk, s.DiskFormat); err != nil {
		return "", err
	}
	return s.DiskFormat, nil
}

// qemuWrites lists the files of a VM directory that QEMU opens for
// writing itself, following symbolic links as it does.
var qemuWrites = []string{serialLogName, pidFileName, disk.OverlayFile, disk.VarsFile}

// refuseLinks refuses a VM directory where a file QEMU writes is a
// symbolic link: QEMU would write through it, into whatever it points at.
func refuseLinks(dir string) error {
	for _, name := range qemuWrites {
		p := filepath.Join(dir, name)
		if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("%s is a symbolic link: QEMU would write through it; mb does not follow links in a VM directory: remove it (rm %s)", p, p)
		}
	}
	return nil
}

// checkFile says clearly when a boot file is missing or unreadable.
func checkFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s does not exist: fix the path in spec.yaml or rebuild the image (make image)", path)
	}
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", path, err)
	}
	if st.IsDir() {
		return fmt.Errorf("%s is a directory, not a file", path)
	}
	return nil
}

package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mbvm/mb/vm/disk"
)

// ImportOptions names the files that make an image.
type ImportOptions struct {
	// Name is the image name; derived from Disk (or Kernel) when empty.
	Name string
	// Disk is a qcow2 or raw disk image: the boot disk (UEFI), or the root
	// disk of a kernel boot.
	Disk string
	// Kernel, Initrd and Cmdline make a direct kernel boot image.
	Kernel  string
	Initrd  string
	Cmdline string
	// Arch, Agent and ReadyLine are recorded in the manifest as given.
	Arch      string
	Agent     string
	ReadyLine string
}

// Import copies local files into $MB_HOME/images/<name>: a disk (probed
// once, its format recorded: it must be qcow2 or raw and reference no other
// file, see disk.Probe), and/or a kernel with its initrd and command
// line. The disk's SHA-256 is computed while copying and recorded. Nothing
// is left behind when it fails.
func Import(ctx context.Context, mbHome string, o ImportOptions) (*Manifest, error) {
	if o.Disk == "" && o.Kernel == "" {
		return nil, errors.New("import: give a disk image file, or --kernel (with --initrd) for a kernel image")
	}
	if (o.Initrd != "" || o.Cmdline != "") && o.Kernel == "" {
		return nil, errors.New("import: --initrd and --cmdline need --kernel")
	}
	name := o.Name
	if name == "" {
		src := o.Disk
		if src == "" {
			src = o.Kernel
		}
		name = NameFromSource(src)
	}
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	m := &Manifest{Name: name, Arch: o.Arch, Cmdline: o.Cmdline, Agent: o.Agent, ReadyLine: o.ReadyLine}
	var info *disk.Info
	if o.Disk != "" {
		var err error
		if info, err = disk.Probe(ctx, o.Disk); err != nil {
			return nil, fmt.Errorf("import %s: %w", o.Disk, err)
		}
		m.Format = info.Format
		if abs, err := filepath.Abs(o.Disk); err == nil {
			m.Source = abs
		}
	} else if abs, err := filepath.Abs(o.Kernel); err == nil {
		m.Source = abs
	}
	for _, f := range []string{o.Kernel, o.Initrd} {
		if f == "" {
			continue
		}
		if fi, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("import: %w", err)
		} else if !fi.Mode().IsRegular() || fi.Size() == 0 {
			return nil, fmt.Errorf("import: %s is not a non-empty regular file", f)
		}
	}

	lock, err := lockImage(ctx, mbHome, name)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	if exists(mbHome, name) {
		return nil, fmt.Errorf("image %q: %w: remove it with `mb image rm %s` or choose another --name", name, ErrExists, name)
	}
	st, err := newStaging(mbHome, name)
	if err != nil {
		return nil, err
	}
	defer st.discard()
	if o.Disk != "" {
		m.Disk = "disk." + info.Format
		h := sha256.New()
		if _, err := copyFile(ctx, o.Disk, filepath.Join(st.dir, m.Disk), 0o444, h); err != nil {
			return nil, fmt.Errorf("import %s: %w", o.Disk, err)
		}
		m.SHA256 = hex.EncodeToString(h.Sum(nil))
	}
	if o.Kernel != "" {
		m.Kernel = "vmlinuz"
		if _, err := copyFile(ctx, o.Kernel, filepath.Join(st.dir, m.Kernel), 0o444, nil); err != nil {
			return nil, fmt.Errorf("import kernel %s: %w", o.Kernel, err)
		}
	}
	if o.Initrd != "" {
		m.Initrd = "initrd.img"
		if _, err := copyFile(ctx, o.Initrd, filepath.Join(st.dir, m.Initrd), 0o444, nil); err != nil {
			return nil, fmt.Errorf("import initrd %s: %w", o.Initrd, err)
		}
	}
	return st.commit(m)
}

package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/vm/disk"
	"github.com/mbvm/mb/vm/spec"
)

// Entry is one image as `mb image ls` shows it.
type Entry struct {
	Name string `json:"name"`
	// Format is the disk's format as recorded when the image came in, or
	// "kernel" for a kernel-only image.
	Format string `json:"format"`
	// Size is the bytes the image's files hold; VirtualSize the disk's size
	// as the guest sees it (0 without a disk).
	Size        int64  `json:"size"`
	VirtualSize int64  `json:"virtual_size,omitempty"`
	SHA256      string `json:"sha256,omitempty"`
	Source      string `json:"source,omitempty"`
	Kernel      bool   `json:"kernel"`
	// UsedBy lists the VMs whose spec names the image.
	UsedBy []string `json:"used_by"`
	// Error says why the image is unusable (incomplete, unreadable).
	Error string `json:"error,omitempty"`
}

// List returns every image under $MB_HOME/images, sorted by name, with
// the VMs among vms that use each. A broken image is listed with Error
// set rather than failing the whole list.
func List(ctx context.Context, mbHome string, vms []*spec.Spec) ([]Entry, error) {
	dirents, err := os.ReadDir(layout.ImagesDir(mbHome))
	if errors.Is(err, os.ErrNotExist) {
		return []Entry{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	entries := []Entry{}
	for _, d := range dirents {
		if strings.HasPrefix(d.Name(), ".") || ValidateName(d.Name()) != nil {
			continue
		}
		// An image the user linked in (a prebuilt one elsewhere) is listed
		// too: reading an image through the user's own link is fine.
		if !d.IsDir() {
			fi, err := os.Stat(filepath.Join(layout.ImagesDir(mbHome), d.Name()))
			if d.Type()&os.ModeSymlink == 0 || err != nil || !fi.IsDir() {
				continue
			}
		}
		entries = append(entries, describe(ctx, mbHome, d.Name(), vms))
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	return entries, nil
}

// Describe returns the named image's entry, as List gives it.
func Describe(ctx context.Context, mbHome, name string, vms []*spec.Spec) Entry {
	return describe(ctx, mbHome, name, vms)
}

func describe(ctx context.Context, mbHome, name string, vms []*spec.Spec) Entry {
	dir := layout.ImageDir(mbHome, name)
	e := Entry{Name: name, UsedBy: UsedBy(mbHome, name, vms), Size: dirSize(dir)}
	m, err := LoadDir(dir)
	if err != nil {
		e.Error = err.Error()
		return e
	}
	e.SHA256, e.Source, e.Kernel = m.SHA256, m.Source, m.Kernel != ""
	if m.Disk == "" {
		e.Format = "kernel"
		return e
	}
	if m.Format == "" {
		e.Error = "the manifest records no disk format: re-pull or re-import the image"
		return e
	}
	info, err := disk.ReadInfo(ctx, m.Path(m.Disk), m.Format)
	if err != nil {
		e.Format = m.Format
		e.Error = err.Error()
		return e
	}
	e.Format, e.VirtualSize = info.Format, info.VirtualSize
	return e
}

// UsedBy returns the names of the VMs among vms that use the image: by
// name (spec.Image) or by a kernel, initrd or disk inside its directory.
func UsedBy(mbHome, name string, vms []*spec.Spec) []string {
	dir := layout.ImageDir(mbHome, name) + string(filepath.Separator)
	users := []string{}
	for _, s := range vms {
		if s == nil {
			continue
		}
		used := s.Image == name
		for _, p := range []string{s.Kernel, s.Initrd, s.Disk} {
			if p != "" && strings.HasPrefix(filepath.Clean(p), dir) {
				used = true
			}
		}
		if used {
			users = append(users, s.Name)
		}
	}
	sort.Strings(users)
	return users
}

// dirSize sums the sizes of the regular files in dir (not recursive: an
// image directory is flat).
func dirSize(dir string) int64 {
	des, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, d := range des {
		if fi, err := d.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}

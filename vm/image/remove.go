package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/vm/spec"
)

// ErrInUse means a VM still uses the image.
var ErrInUse = errors.New("image is in use")

// ErrNotFound means there is no image of that name.
var ErrNotFound = errors.New("image not found")

// Remove deletes the named image unless one of the VMs vms returns uses
// it. vms is called while Remove holds the image's lock, which VM create
// and start hold too (see Share), so a VM created meanwhile is seen. The
// directory first disappears from its name in one rename, so a crash never
// leaves a half-deleted image that looks usable.
func Remove(ctx context.Context, mbHome, name string, vms func() []*spec.Spec) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	lock, err := lockImage(ctx, mbHome, name)
	if err != nil {
		return err
	}
	defer lock.Release()
	dir := layout.ImageDir(mbHome, name)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("image %q: %w (mb image ls lists the images)", name, ErrNotFound)
	}
	if users := UsedBy(mbHome, name, vms()); len(users) > 0 {
		return fmt.Errorf("image %q: %w by VM %s: delete those VMs first", name, ErrInUse, strings.Join(users, ", "))
	}
	trash, err := os.MkdirTemp(layout.ImagesDir(mbHome), ".rm-"+name+"-")
	if err != nil {
		return fmt.Errorf("remove image %q: %w", name, err)
	}
	gone := filepath.Join(trash, name)
	if err := os.Rename(dir, gone); err != nil {
		_ = os.Remove(trash)
		return fmt.Errorf("remove image %q: %w", name, err)
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("remove image %q: its files are left in %s: %w", name, trash, err)
	}
	return nil
}

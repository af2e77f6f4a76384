package disk

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// CreateOverlayOn makes path a new qcow2 overlay of size bytes on base
// (a qcow2 that mb made), the base's format pinned. The base need not
// exist yet (a snapshot's disk, renamed into place right after): the
// overlay is written without opening it. It goes to a temporary file that
// is renamed over path, mode 0600.
func CreateOverlayOn(ctx context.Context, path, base string, size int64) error {
	if !filepath.IsAbs(base) {
		return fmt.Errorf("overlay %s: base %s is not an absolute path", path, base)
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	_ = os.Remove(tmp)
	if _, err := runQemuImg(ctx, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, "-u", tmp, strconv.FormatInt(size, 10)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("create disk overlay %s on %s: %w", path, base, err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("create disk overlay %s: %w", path, err)
	}
	return nil
}

// Rebase moves the overlay at path (qcow2) onto base (of format), copying
// into it whatever its old backing file held that base does not: the
// guest sees the same disk. QEMU must not have the overlay open.
func Rebase(ctx context.Context, path, base, format string) error {
	if err := CheckFormat(format); err != nil {
		return err
	}
	if _, err := runQemuImg(ctx, "rebase", "-q", "-f", "qcow2", "-b", base, "-F", format, path); err != nil {
		return fmt.Errorf("move disk %s onto %s: %w", path, base, err)
	}
	return nil
}

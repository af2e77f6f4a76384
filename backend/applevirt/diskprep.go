package applevirt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"

	"github.com/mbvm/mb/vm/image"
)

// prepareImageDisk makes the VM's own raw disk, dir/disk.raw, from an
// image's disk the first time the VM boots it (the image's disk is never
// written): a clone of a raw disk (instant on APFS), or a conversion of a
// qcow2 one with qemu-img. It then grows the disk to size when size is
// larger. It says what it did in the log.
func prepareImageDisk(ctx context.Context, dir string, m *image.Manifest, size uint64, log *slog.Logger) (string, error) {
	dst := vmPath(dir, DiskFile)
	if _, err := os.Stat(dst); err == nil {
		return dst, growDisk(dst, size)
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("VM disk %s: %w", dst, err)
	}
	src := m.Path(m.Disk)
	tmp := dst + ".tmp"
	_ = os.Remove(tmp)
	switch m.Format {
	case "raw":
		if err := cloneFile(src, tmp); err != nil {
			os.Remove(tmp)
			return "", fmt.Errorf("image %q: copy its raw disk for this VM: %w; or make it yourself with\n  cp -c %s %s", m.Name, err, shellQuote(src), shellQuote(dst))
		}
		log.Info("made the VM's raw disk from the image's", "image", m.Name, "disk", dst)
	default:
		qemuImg, err := exec.LookPath("qemu-img")
		if err != nil {
			return "", fmt.Errorf("image %q has a %s disk and the applevirt backend boots raw disks only; qemu-img converts it but is not installed (brew install qemu), or convert it yourself with\n  qemu-img convert -O raw %s %s",
				m.Name, orUnknown(m.Format), shellQuote(src), shellQuote(dst))
		}
		args := []string{"convert", "-O", "raw"}
		if m.Format != "" {
			args = append(args, "-f", m.Format)
		}
		args = append(args, src, tmp)
		log.Info("converting the image's disk to raw for the applevirt backend (once per VM)", "image", m.Name, "from", m.Format, "disk", dst)
		out, err := exec.CommandContext(ctx, qemuImg, args...).CombinedOutput()
		if err != nil {
			os.Remove(tmp)
			return "", fmt.Errorf("image %q: qemu-img convert -O raw %s %s: %w: %s", m.Name, src, tmp, err, strings.TrimSpace(string(out)))
		}
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("VM disk: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("VM disk: %w", err)
	}
	return dst, growDisk(dst, size)
}

// growDisk extends a raw disk to size bytes when it is smaller (sparse; the
// guest grows its file system into the space).
func growDisk(path string, size uint64) error {
	if size == 0 {
		return nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("VM disk: %w", err)
	}
	if uint64(st.Size()) >= size {
		return nil
	}
	if err := os.Truncate(path, int64(size)); err != nil {
		return fmt.Errorf("grow VM disk %s to %d bytes: %w", path, size, err)
	}
	return nil
}

// copyFile copies src to a new file dst (the fallback where cloning is not
// available).
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

package disk

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// makeBase makes a 64 MiB qcow2 base whose first MiB holds the byte 0xaa.
func makeBase(t *testing.T, dir string) string {
	t.Helper()
	needTool(t, "qemu-img", "qemu-utils")
	qemuIO := needTool(t, "qemu-io", "qemu-utils")
	base := filepath.Join(dir, "base.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", base, "64M")
	run(t, qemuIO, "-f", "qcow2", "-c", "write -P 0xaa 0 1M", base)
	return base
}

func TestOverlayNeverWritesBase(t *testing.T) {
	dir := t.TempDir()
	base := makeBase(t, dir)
	before := fileSHA256(t, base)
	vmDir := filepath.Join(dir, "vm")
	if err := os.Mkdir(vmDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ov := Overlay{Path: filepath.Join(vmDir, OverlayFile), Base: base, Size: 128 << 20}
	if err := ov.Ensure(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	info, err := ReadInfo(testCtx(t), ov.Path, "qcow2")
	if err != nil {
		t.Fatal(err)
	}
	if info.Format != "qcow2" || info.VirtualSize != 128<<20 || info.BackingFilename != base || info.BackingFilenameFormat != "qcow2" {
		t.Errorf("overlay info %+v: want qcow2, 128 MiB, backed by %s (qcow2)", info, base)
	}
	if fi, err := os.Stat(ov.Path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("overlay mode: %v %v, want 0600", fi.Mode(), err)
	}

	// Write through the overlay; the guest sees the write, the base does not.
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x55 0 1M", ov.Path)
	run(t, "qemu-io", "-f", "qcow2", "-c", "read -P 0x55 0 1M", ov.Path)
	// Past the old end too: the resize made room.
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x11 100M 1M", ov.Path)
	if after := fileSHA256(t, base); after != before {
		t.Errorf("base checksum changed from %s to %s after writing through the overlay", before, after)
	}
	run(t, "qemu-io", "-f", "qcow2", "-c", "read -P 0xaa 0 1M", base)

	// Ensure again keeps the disk and its data.
	if err := ov.Ensure(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	run(t, "qemu-io", "-f", "qcow2", "-c", "read -P 0x55 0 1M", ov.Path)

	// It may grow, never shrink.
	ov.Size = 256 << 20
	if err := ov.Ensure(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if info, _ := ReadInfo(testCtx(t), ov.Path, "qcow2"); info.VirtualSize != 256<<20 {
		t.Errorf("grown disk is %d bytes, want %d", info.VirtualSize, 256<<20)
	}
	ov.Size = 64 << 20
	if err := ov.Ensure(testCtx(t)); err == nil || !strings.Contains(err.Error(), "only grow") {
		t.Errorf("shrinking: err = %v, want a refusal", err)
	}
}

func TestOverlayRelativeBaseIsStoredAbsolute(t *testing.T) {
	dir := t.TempDir()
	base := makeBase(t, dir)
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(wd, base)
	if err != nil {
		t.Fatal(err)
	}
	ov := Overlay{Path: filepath.Join(dir, OverlayFile), Base: rel}
	if err := ov.Ensure(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	info, err := ReadInfo(testCtx(t), ov.Path, "qcow2")
	if err != nil {
		t.Fatal(err)
	}
	if info.BackingFilename != base {
		t.Errorf("backing file recorded as %q, want the absolute %q", info.BackingFilename, base)
	}
	if info.VirtualSize != 64<<20 {
		t.Errorf("size %d: Size 0 should keep the base's 64 MiB", info.VirtualSize)
	}
}

func TestOverlayOnRawBase(t *testing.T) {
	needTool(t, "qemu-img", "qemu-utils")
	dir := t.TempDir()
	base := filepath.Join(dir, "base.raw")
	img := make([]byte, 4<<20)
	img[510], img[511] = 0x55, 0xaa
	if err := os.WriteFile(base, img, 0o644); err != nil {
		t.Fatal(err)
	}
	ov := Overlay{Path: filepath.Join(dir, OverlayFile), Base: base, Size: 8 << 20}
	if err := ov.Ensure(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	info, err := ReadInfo(testCtx(t), ov.Path, "qcow2")
	if err != nil {
		t.Fatal(err)
	}
	if info.BackingFilenameFormat != "raw" {
		t.Errorf("backing format %q, want raw (probed)", info.BackingFilenameFormat)
	}
}

func TestOverlayMissingBacking(t *testing.T) {
	dir := t.TempDir()
	base := makeBase(t, dir)
	ov := Overlay{Path: filepath.Join(dir, OverlayFile), Base: base}
	if err := ov.Ensure(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(base, base+".moved"); err != nil {
		t.Fatal(err)
	}
	_, err := ReadInfo(testCtx(t), ov.Path, "qcow2")
	if !errors.Is(err, ErrMissingBacking) || !strings.Contains(err.Error(), base) {
		t.Errorf("ReadInfo: err = %v, want ErrMissingBacking naming %s", err, base)
	}
	// Probe, for images that come in, refuses any overlay outright.
	_, err = Probe(testCtx(t), ov.Path)
	if !errors.Is(err, ErrReferencesFile) || !strings.Contains(err.Error(), base) {
		t.Errorf("Probe: err = %v, want ErrReferencesFile naming %s", err, base)
	}
	// The overlay's own Ensure also says what is wrong.
	if err := os.Rename(base+".moved", base); err != nil {
		t.Fatal(err)
	}
	ov2 := Overlay{Path: filepath.Join(dir, "other.qcow2"), Base: base}
	if err := ov2.Ensure(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(base); err != nil {
		t.Fatal(err)
	}
	if err := ov2.Ensure(testCtx(t)); err == nil || !strings.Contains(err.Error(), "re-pull or re-import") {
		t.Errorf("Ensure with the base gone: err = %v, want one naming the fix", err)
	}
}

func TestOverlayOnOtherBaseRefused(t *testing.T) {
	dir := t.TempDir()
	base := makeBase(t, dir)
	other := filepath.Join(dir, "other.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", other, "64M")
	ov := Overlay{Path: filepath.Join(dir, OverlayFile), Base: base}
	if err := ov.Ensure(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	ov.Base = other
	if err := ov.Ensure(testCtx(t)); err == nil || !strings.Contains(err.Error(), "image changed") {
		t.Errorf("err = %v, want a refusal naming the changed image", err)
	}
}

func TestOverlayCreateFailureLeavesNothing(t *testing.T) {
	needTool(t, "qemu-img", "qemu-utils")
	dir := t.TempDir()
	ov := Overlay{Path: filepath.Join(dir, OverlayFile), Base: filepath.Join(dir, "nope.qcow2")}
	if err := ov.Ensure(testCtx(t)); err == nil {
		t.Fatal("Ensure on a missing base succeeded")
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}

package disk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrNotImage means a file is not a disk image mb can boot.
var ErrNotImage = errors.New("not a disk image")

// Formats lists the disk formats mb accepts for a base image.
var Formats = []string{"qcow2", "raw"}

// Probe decides the format of the disk image at path and checks that it
// is one mb can use. It decides from the file's first bytes, never by
// letting qemu-img guess: a file that starts with the qcow2 magic is qcow2,
// anything else must look like a raw disk (a partition table, a boot sector
// or a filesystem: qemu-img would call any file "raw"). A web page, an
// archive, a compressed file or another disk format is refused with an
// error wrapping ErrNotImage that says what it looks like instead, and a
// qcow2 image that names another file (a backing file or an external data
// file) is refused with ErrReferencesFile naming that file. Only then does
// qemu-img read the image, with the format given explicitly.
//
// Call Probe once, when an image or disk first comes in, and store the
// format: a later Probe of a raw disk a guest has written to could find
// the qcow2 header the guest wrote there.
func Probe(ctx context.Context, path string) (*Info, error) {
	if err := CheckName(path); err != nil {
		return nil, err
	}
	head, size, err := readHead(path)
	if err != nil {
		return nil, err
	}
	if what := knownNonImage(head); what != "" {
		return nil, fmt.Errorf("%s: %w: it looks like %s", path, ErrNotImage, what)
	}
	format := "raw"
	if bytes.HasPrefix(head, qcow2Magic) {
		format = "qcow2"
	} else if size%512 != 0 || !looksLikeDisk(head) {
		return nil, fmt.Errorf("%s: %w: no partition table, boot sector or filesystem found (want a qcow2 or raw disk image; convert others with qemu-img convert -O qcow2)", path, ErrNotImage)
	}
	if err := CheckStandalone(path, format); err != nil {
		return nil, err
	}
	info, err := ReadInfo(ctx, path, format)
	if err != nil {
		return nil, err
	}
	if info.Format != format {
		return nil, fmt.Errorf("%s: qemu-img reads it as %q, not %s: %w", path, info.Format, format, ErrNotImage)
	}
	return info, nil
}

// CheckFormat checks a stored or given disk format: qcow2 or raw.
func CheckFormat(format string) error {
	for _, f := range Formats {
		if f == format {
			return nil
		}
	}
	return fmt.Errorf("disk format %q is not supported: use qcow2 or raw", format)
}

// headSize covers the boot sector, the GPT header, the ext superblock, the
// ISO 9660 volume descriptor and the Btrfs superblock (at 64 KiB).
const headSize = 72 * 1024

func readHead(path string) ([]byte, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("probe disk image: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("probe disk image: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("probe disk image %s: %w: not a regular file", path, ErrNotImage)
	}
	head := make([]byte, headSize)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, 0, fmt.Errorf("probe disk image %s: %w", path, err)
	}
	return head[:n], fi.Size(), nil
}

// knownNonImage names what head looks like when it is clearly no disk.
func knownNonImage(head []byte) string {
	trimmed := bytes.TrimLeft(head, " \t\r\n\xef\xbb\xbf")
	lower := bytes.ToLower(trimmed[:min(len(trimmed), 64)])
	switch {
	case len(head) == 0:
		return "an empty file"
	case bytes.HasPrefix(lower, []byte("<!doctype html")), bytes.HasPrefix(lower, []byte("<html")), bytes.HasPrefix(lower, []byte("<?xml")):
		return "a web page (HTML or XML), not an image: check the URL"
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return "an xz-compressed file: decompress it first (xz -d)"
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return "a gzip-compressed file: decompress it first (gunzip)"
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return "a zstd-compressed file: decompress it first (zstd -d)"
	case bytes.HasPrefix(head, []byte("BZh")):
		return "a bzip2-compressed file: decompress it first (bunzip2)"
	case bytes.HasPrefix(head, []byte("PK\x03\x04")):
		return "a zip archive: extract the image from it first"
	case len(head) > 262 && bytes.Equal(head[257:262], []byte("ustar")):
		return "a tar archive: extract the image from it first (tar -xf)"
	case bytes.HasPrefix(head, []byte("KDMV")), bytes.HasPrefix(head, []byte("# Disk DescriptorFile")):
		return otherFormat("VMDK")
	case len(head) >= 68 && bytes.Equal(head[64:68], []byte{0x7f, 0x10, 0xda, 0xbe}):
		return otherFormat("VDI")
	case bytes.HasPrefix(head, []byte("vhdxfile")):
		return otherFormat("VHDX")
	case bytes.HasPrefix(head, []byte("conectix")):
		return otherFormat("VHD")
	case bytes.HasPrefix(head, []byte("QED\x00")):
		return otherFormat("QED")
	}
	return ""
}

// looksLikeDisk reports whether a raw image's first bytes hold a boot
// sector or partition table (0x55AA), or an ext2/3/4, XFS, Btrfs or
// ISO 9660 filesystem.
func looksLikeDisk(head []byte) bool {
	at := func(off int, magic []byte) bool {
		return len(head) >= off+len(magic) && bytes.Equal(head[off:off+len(magic)], magic)
	}
	return at(510, []byte{0x55, 0xaa}) || // MBR, protective MBR of GPT, FAT boot sector
		at(1080, []byte{0x53, 0xef}) || // ext2/3/4 superblock magic
		at(0, []byte("XFSB")) ||
		at(0x10040, []byte("_BHRfS_M")) ||
		at(32769, []byte("CD001"))
}

// otherFormat describes a disk format mb does not use.
func otherFormat(name string) string {
	return "a " + name + " disk image: disk format " + name + " is not supported, use qcow2 or raw (convert it with qemu-img convert -O qcow2)"
}

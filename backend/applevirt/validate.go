package applevirt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// checkFile says clearly when a boot file is missing, unreadable or not a
// regular file.
func checkFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s does not exist: fix the path in spec.yaml or rebuild the image", path)
	}
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	return nil
}

// readHead reads up to n bytes from the start of path.
func readHead(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, n)
	k, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf[:k], nil
}

// Disk formats recognised by their first bytes; Apple Virtualization takes
// raw images only.
var diskMagics = []struct {
	format string
	magic  []byte
}{
	{"qcow2", []byte("QFI\xfb")},
	{"vmdk", []byte("KDMV")},
	{"vdi", []byte("<<< ")},
	{"vhdx", []byte("vhdxfile")},
}

// checkRawDisk refuses a disk that is not raw, giving the qemu-img command
// that converts it.
func checkRawDisk(path string) error {
	if err := checkFile(path); err != nil {
		return fmt.Errorf("disk file: %w", err)
	}
	head, err := readHead(path, 8)
	if err != nil {
		return fmt.Errorf("disk %s: %w", path, err)
	}
	for _, m := range diskMagics {
		if bytes.HasPrefix(head, m.magic) {
			dst := path + ".raw"
			return fmt.Errorf("disk %s is %s and the applevirt backend boots raw disks only: convert it with\n  qemu-img convert -O raw %s %s\nand set disk: %s in spec.yaml",
				path, m.format, shellQuote(path), shellQuote(dst), dst)
		}
	}
	return nil
}

// arm64ImageMagic is the magic of an uncompressed arm64 Linux Image, at
// offset 56 of its header.
const arm64ImageMagic = 0x644d5241 // "ARM\x64", little-endian

// checkKernel checks the kernel file; on arm64, Apple's Linux boot loader
// starts only an uncompressed Image, so a compressed one (vmlinuz: gzip,
// zstd, xz, or an EFI zboot image) is refused with how to unpack it.
func checkKernel(path, arch string) error {
	if err := checkFile(path); err != nil {
		return fmt.Errorf("kernel file: %w", err)
	}
	if arch != "arm64" {
		return nil
	}
	head, err := readHead(path, 64)
	if err != nil {
		return fmt.Errorf("kernel %s: %w", path, err)
	}
	if len(head) >= 60 && binary.LittleEndian.Uint32(head[56:60]) == arm64ImageMagic {
		return nil
	}
	how := "unpack it to an uncompressed Image"
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		how = fmt.Sprintf("it is gzip-compressed: gunzip -c %s > Image", shellQuote(path))
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		how = fmt.Sprintf("it is zstd-compressed: zstd -d -c %s > Image", shellQuote(path))
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		how = fmt.Sprintf("it is xz-compressed: xz -d -c %s > Image", shellQuote(path))
	case len(head) >= 8 && string(head[4:8]) == "zimg":
		how = "it is an EFI zboot image: boot the distribution's disk through EFI instead, or extract the Image with the kernel's scripts/extract-vmlinux"
	}
	return fmt.Errorf("kernel %s is not an uncompressed arm64 Linux Image, which is all Apple's Linux boot loader starts: %s, and set kernel: to it in spec.yaml", path, how)
}

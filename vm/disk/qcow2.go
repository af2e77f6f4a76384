package disk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ErrReferencesFile means a disk image names another file that QEMU would
// open with it: a backing file or an external data file. mb refuses such
// images (and never converts them, which would copy the other file in):
// whoever wrote the image, or a guest that wrote a qcow2 header into a raw
// disk, would choose which host file the guest gets to read.
var ErrReferencesFile = errors.New("disk image references another file")

// ErrJSONName means a file name uses QEMU's json: pseudo-protocol, which
// QEMU reads as options (a driver, other files) rather than as a path.
var ErrJSONName = errors.New("json: file names are refused")

// qcow2Magic starts every qcow2 image.
var qcow2Magic = []byte{'Q', 'F', 'I', 0xfb}

// qcow2 header offsets and values (docs/interop/qcow2.txt in QEMU).
const (
	qcowBackingOffset  = 8  // u64: offset of the backing file name, 0 when none
	qcowBackingSize    = 16 // u32: its length
	qcowIncompatible   = 72 // u64 (version 3): incompatible feature bits
	qcowHeaderLength   = 100
	qcowV2HeaderLength = 72
	qcowDataFileBit    = 1 << 2     // incompatible feature: external data file
	qcowExtDataFile    = 0x44415441 // header extension: the data file's name
	qcowMaxName        = 4096       // longest file name read from a header
)

// CheckName refuses a file name QEMU would not read as a plain path.
func CheckName(path string) error {
	if strings.HasPrefix(path, "json:") {
		return fmt.Errorf("%q: %w: give the path of a file", path, ErrJSONName)
	}
	return nil
}

// CheckStandalone refuses a disk image of the given format that would make
// QEMU open another file: a qcow2 image with a backing file or an external
// data file. It reads the qcow2 header itself, without qemu-img, and names
// the file referenced. A raw image references nothing.
func CheckStandalone(path, format string) error {
	if err := CheckName(path); err != nil {
		return err
	}
	if format != "qcow2" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read disk image header: %w", err)
	}
	defer f.Close()
	backing, dataFile, err := qcow2References(f)
	if err != nil {
		return fmt.Errorf("disk image %s: %w", path, err)
	}
	switch {
	case backing != "":
		return fmt.Errorf("disk image %s: %w: it is an overlay on the backing file %q; mb uses only standalone images, so QEMU never opens a file the image names (use a standalone image)", path, ErrReferencesFile, backing)
	case dataFile != "":
		return fmt.Errorf("disk image %s: %w: its data is in the external file %q; mb uses only standalone images, so QEMU never opens a file the image names (use a standalone image)", path, ErrReferencesFile, dataFile)
	}
	return nil
}

// qcow2References returns the backing file and external data file a qcow2
// header names ("" for none; "(unnamed)" when the feature bit is set with
// no name).
func qcow2References(r io.ReaderAt) (backing, dataFile string, err error) {
	hdr := make([]byte, qcowHeaderLength+4)
	n, err := r.ReadAt(hdr, 0)
	if n < qcowV2HeaderLength {
		return "", "", fmt.Errorf("qcow2 header too short (%d bytes): %v", n, err)
	}
	hdr = hdr[:n]
	if !bytes.Equal(hdr[:4], qcow2Magic) {
		return "", "", errors.New("not a qcow2 image")
	}
	be := binary.BigEndian
	version := be.Uint32(hdr[4:])
	if off, size := be.Uint64(hdr[qcowBackingOffset:]), be.Uint32(hdr[qcowBackingSize:]); off != 0 {
		backing = readName(r, int64(off), size)
	}
	extStart := int64(qcowV2HeaderLength)
	if version >= 3 {
		if n < qcowHeaderLength+4 {
			return "", "", errors.New("qcow2 version 3 header too short")
		}
		if be.Uint64(hdr[qcowIncompatible:])&qcowDataFileBit != 0 {
			dataFile = "(unnamed)"
		}
		extStart = int64(be.Uint32(hdr[qcowHeaderLength:]))
	}
	// Header extensions: type, length, data padded to 8 bytes; type 0 ends.
	for off, i := extStart, 0; i < 64; i++ {
		var eh [8]byte
		if _, err := r.ReadAt(eh[:], off); err != nil {
			break
		}
		typ, length := be.Uint32(eh[:]), be.Uint32(eh[4:])
		if typ == 0 {
			break
		}
		if typ == qcowExtDataFile {
			dataFile = readName(r, off+8, length)
		}
		off += 8 + (int64(length)+7)&^7
	}
	return backing, dataFile, nil
}

// readName reads a file name of size bytes at off, capped; a name that
// cannot be read is still reported as present.
func readName(r io.ReaderAt, off int64, size uint32) string {
	if size == 0 {
		return "(unnamed)"
	}
	buf := make([]byte, min(int(size), qcowMaxName))
	n, _ := r.ReadAt(buf, off)
	if n == 0 {
		return "(unreadable name)"
	}
	return strings.ToValidUTF8(string(buf[:n]), "?")
}

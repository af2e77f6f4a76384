package disk

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestProbe(t *testing.T) {
	needTool(t, "qemu-img", "qemu-utils")
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mbr := make([]byte, 1<<20)
	mbr[510], mbr[511] = 0x55, 0xaa
	ext := make([]byte, 1<<20)
	ext[1080], ext[1081] = 0x53, 0xef
	qcow := filepath.Join(dir, "disk.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", qcow, "16M")

	tests := []struct {
		name, path, format, errHas string
	}{
		{"qcow2", qcow, "qcow2", ""},
		{"raw with MBR", write("mbr.img", mbr), "raw", ""},
		{"raw ext4", write("ext.img", ext), "raw", ""},
		{"html", write("page.img", []byte("\n<!DOCTYPE html><html><body>404</body></html>")), "", "web page"},
		{"text", write("notes.txt", []byte(strings.Repeat("hello\n", 200))), "", "no partition table"},
		{"zeros", write("zeros.img", make([]byte, 1<<20)), "", "no partition table"},
		{"gzip", write("disk.img.gz", []byte{0x1f, 0x8b, 8, 0, 0, 0}), "", "gunzip"},
		{"xz", write("disk.img.xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0, 0}), "", "xz -d"},
		{"empty", write("empty.img", nil), "", "empty file"},
		{"odd size raw", write("odd.img", append(mbr, 1)), "", "no partition table"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := Probe(testCtx(t), tc.path)
			if tc.errHas == "" {
				if err != nil {
					t.Fatalf("Probe: %v", err)
				}
				if info.Format != tc.format {
					t.Errorf("format %q, want %q", info.Format, tc.format)
				}
				return
			}
			if !errors.Is(err, ErrNotImage) || !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("err = %v, want ErrNotImage mentioning %q", err, tc.errHas)
			}
		})
	}
}

func TestProbeRealExt4(t *testing.T) {
	needTool(t, "qemu-img", "qemu-utils")
	mkfs := needTool(t, "mkfs.ext4", "e2fsprogs")
	p := filepath.Join(t.TempDir(), "root.img")
	run(t, mkfs, "-q", "-F", p, "8M")
	info, err := Probe(testCtx(t), p)
	if err != nil || info.Format != "raw" {
		t.Fatalf("Probe of an ext4 image: %+v, %v", info, err)
	}
}

func TestProbeUnsupportedFormat(t *testing.T) {
	needTool(t, "qemu-img", "qemu-utils")
	p := filepath.Join(t.TempDir(), "disk.vdi")
	run(t, "qemu-img", "create", "-q", "-f", "vdi", p, "16M")
	if _, err := Probe(testCtx(t), p); err == nil || !strings.Contains(err.Error(), "qemu-img convert") {
		t.Errorf("err = %v, want a refusal naming qemu-img convert", err)
	}
}

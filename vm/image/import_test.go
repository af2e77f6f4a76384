package image

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mbvm/mb/internal/testenv"
	"github.com/mbvm/mb/vm/disk"
)

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestImportDisk(t *testing.T) {
	data := qcow2Bytes(t)
	src := writeFile(t, t.TempDir(), "Debian 12.qcow2", data)
	mbHome := t.TempDir()
	m, err := Import(testCtx(t), mbHome, ImportOptions{Disk: src, Agent: "qemu-ga"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "debian-12" || m.Format != "qcow2" || m.SHA256 != sha(data) || m.Agent != "qemu-ga" || m.Source != src {
		t.Errorf("manifest %+v", m)
	}
	if got, _ := os.ReadFile(m.Path(m.Disk)); sha(got) != sha(data) {
		t.Error("imported disk differs from the source")
	}
	// The source is left as it was.
	if got, _ := os.ReadFile(src); sha(got) != sha(data) {
		t.Error("import changed its source")
	}
	if _, err := Import(testCtx(t), mbHome, ImportOptions{Disk: src}); !errors.Is(err, ErrExists) {
		t.Errorf("second import: err = %v, want ErrExists", err)
	}
	assertNoLeftovers(t, mbHome, "debian-12")
}

func TestImportKernelImage(t *testing.T) {
	dir := t.TempDir()
	k := writeFile(t, dir, "vmlinuz", []byte("kernel"))
	i := writeFile(t, dir, "initrd.img", []byte("initrd"))
	mbHome := t.TempDir()
	m, err := Import(testCtx(t), mbHome, ImportOptions{Name: "mini", Kernel: k, Initrd: i, Cmdline: "console=ttyS0", ReadyLine: "READY"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Kernel != "vmlinuz" || m.Initrd != "initrd.img" || m.Cmdline != "console=ttyS0" || m.Disk != "" || m.ReadyLine != "READY" {
		t.Errorf("manifest %+v", m)
	}
	if b, _ := os.ReadFile(m.Path(m.Initrd)); string(b) != "initrd" {
		t.Errorf("initrd content %q", b)
	}
}

func TestImportKernelWithRootDisk(t *testing.T) {
	mkfs := testenv.Tool(t, "mkfs.ext4", "e2fsprogs")
	testenv.Tool(t, "qemu-img", "qemu-utils")
	dir := t.TempDir()
	root := filepath.Join(dir, "root.img")
	if out, err := exec.Command(mkfs, "-q", "-F", root, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	k := writeFile(t, dir, "vmlinuz", []byte("kernel"))
	m, err := Import(testCtx(t), t.TempDir(), ImportOptions{Name: "deb", Disk: root, Kernel: k, Cmdline: "root=/dev/vda"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Format != "raw" || m.Disk != "disk.raw" || m.Kernel != "vmlinuz" {
		t.Errorf("manifest %+v", m)
	}
}

func TestImportBadInput(t *testing.T) {
	dir := t.TempDir()
	text := writeFile(t, dir, "notes.txt", []byte(strings.Repeat("not a disk\n", 100)))
	k := writeFile(t, dir, "vmlinuz", []byte("kernel"))
	tests := []struct {
		name string
		o    ImportOptions
		want string
	}{
		{"nothing", ImportOptions{Name: "x"}, "give a disk image"},
		{"initrd without kernel", ImportOptions{Name: "x", Disk: text, Initrd: k}, "need --kernel"},
		{"missing kernel", ImportOptions{Name: "x", Kernel: filepath.Join(dir, "nope")}, "no such file"},
		{"bad name", ImportOptions{Name: "../evil", Kernel: k}, "invalid image name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mbHome := t.TempDir()
			if _, err := Import(testCtx(t), mbHome, tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
			assertNoLeftovers(t, mbHome)
		})
	}
	testenv.Tool(t, "qemu-img", "qemu-utils")
	mbHome := t.TempDir()
	if _, err := Import(testCtx(t), mbHome, ImportOptions{Disk: text}); !errors.Is(err, disk.ErrNotImage) {
		t.Errorf("text file: err = %v, want ErrNotImage", err)
	}
	assertNoLeftovers(t, mbHome)
}

// An image that names a host file (qcow2 backing file) is refused, naming
// the file, whether that file exists or not: importing it would let the
// image's author choose a host file for the guest to read.
func TestImportRefusesOverlay(t *testing.T) {
	data := qcow2Bytes(t)
	dir := t.TempDir()
	base := writeFile(t, dir, "base.qcow2", data)
	ov := filepath.Join(dir, "ov.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, ov).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, gone := range []bool{false, true} {
		if gone {
			if err := os.Remove(base); err != nil {
				t.Fatal(err)
			}
		}
		mbHome := t.TempDir()
		_, err := Import(testCtx(t), mbHome, ImportOptions{Disk: ov})
		if !errors.Is(err, disk.ErrReferencesFile) || !strings.Contains(err.Error(), base) {
			t.Errorf("base gone %v: err = %v, want ErrReferencesFile naming %s", gone, err, base)
		}
		assertNoLeftovers(t, mbHome)
	}
}

// The attack of Lima's CVE-2023-32684: a qcow2 whose backing file is a
// host file, pulled or imported, must be refused before anything opens it.
func TestPullAndImportRefuseHostBackingFile(t *testing.T) {
	dir := t.TempDir()
	secret := writeFile(t, dir, "secret", bytes.Repeat([]byte("host secret\n"), 4096))
	evil := filepath.Join(dir, "evil.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", secret, evil, "1M").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	mbHome := t.TempDir()
	if _, err := Import(testCtx(t), mbHome, ImportOptions{Disk: evil}); !errors.Is(err, disk.ErrReferencesFile) || !strings.Contains(err.Error(), secret) {
		t.Errorf("import: err = %v, want ErrReferencesFile naming %s", err, secret)
	}
	if _, err := Pull(testCtx(t), mbHome, pullOpts("file://"+evil)); !errors.Is(err, disk.ErrReferencesFile) || !strings.Contains(err.Error(), secret) {
		t.Errorf("pull file://: err = %v, want ErrReferencesFile naming %s", err, secret)
	}
	raw, err := os.ReadFile(evil)
	if err != nil {
		t.Fatal(err)
	}
	srv := newImageServer(t, raw)
	if _, err := Pull(testCtx(t), mbHome, pullOpts(srv.URL+"/evil.qcow2")); !errors.Is(err, disk.ErrReferencesFile) || !strings.Contains(err.Error(), secret) {
		t.Errorf("pull http://: err = %v, want ErrReferencesFile naming %s", err, secret)
	}
	assertNoLeftovers(t, mbHome)

	// An external data file is the same attack by another field.
	df := filepath.Join(dir, "df.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-o", "data_file="+secret+",data_file_raw=on", df, "48K").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if _, err := Import(testCtx(t), mbHome, ImportOptions{Disk: df}); !errors.Is(err, disk.ErrReferencesFile) || !strings.Contains(err.Error(), secret) {
		t.Errorf("import with data file: err = %v, want ErrReferencesFile naming %s", err, secret)
	}
	assertNoLeftovers(t, mbHome)
}

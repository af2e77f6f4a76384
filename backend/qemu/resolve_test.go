package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mbvm/mb/internal/testenv"
	"github.com/mbvm/mb/vm/disk"
	"github.com/mbvm/mb/vm/spec"
)

// writeImage makes $MB_HOME/images/<name> with the given manifest and files.
func writeImage(t *testing.T, mbHome, name, manifest string, files ...string) string {
	t.Helper()
	dir := filepath.Join(mbHome, "images", name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "image.yaml"), []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestResolveKernelImage(t *testing.T) {
	mbHome := t.TempDir()
	imgDir := writeImage(t, mbHome, "mini", "name: mini\narch: x86_64\nkernel: vmlinuz\ninitrd: initrd.img\ncmdline: console=ttyS0 quiet\n", "vmlinuz", "initrd.img")
	s := &spec.Spec{Name: "vm1", Image: "mini", Cmdline: "mb.selftest=poweroff"}
	s.SetDefaults()
	c, err := resolveBoot(context.Background(), t.TempDir(), mbHome, s, archX86_64)
	if err != nil {
		t.Fatal(err)
	}
	if c.Kernel != filepath.Join(imgDir, "vmlinuz") || c.Initrd != filepath.Join(imgDir, "initrd.img") {
		t.Errorf("kernel/initrd = %s / %s", c.Kernel, c.Initrd)
	}
	if want := "console=ttyS0 quiet mb.selftest=poweroff mb.hostname=vm1"; c.Cmdline != want {
		t.Errorf("cmdline = %q, want %q", c.Cmdline, want)
	}
	if len(c.Drives) != 0 || c.FirmwareCode != "" {
		t.Errorf("a kernel image got drives %v / firmware %q", c.Drives, c.FirmwareCode)
	}

	if _, err := resolveBoot(context.Background(), t.TempDir(), mbHome, s, archAArch64); err == nil || !strings.Contains(err.Error(), "is for x86_64") {
		t.Errorf("x86_64 image on aarch64: err = %v", err)
	}
}

func TestResolveExplicitKernel(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "bzImage")
	if err := os.WriteFile(kernel, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	// An explicit kernel wins over the image, and its cmdline is the whole
	// command line.
	s := &spec.Spec{Name: "k", Image: "missing", Kernel: kernel, Cmdline: "console=ttyS0"}
	s.SetDefaults()
	c, err := resolveBoot(context.Background(), dir, t.TempDir(), s, archX86_64)
	if err != nil {
		t.Fatal(err)
	}
	if c.Kernel != kernel || c.Cmdline != "console=ttyS0 mb.hostname=k" {
		t.Errorf("kernel %q cmdline %q", c.Kernel, c.Cmdline)
	}
}

// A direct kernel boot without a command line gets the serial console, so
// that the boot shows in serial.log (mb logs).
func TestResolveKernelWithoutCmdline(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "bzImage")
	if err := os.WriteFile(kernel, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for a, want := range map[arch]string{archX86_64: "console=ttyS0 mb.hostname=k", archAArch64: "console=ttyAMA0 mb.hostname=k"} {
		s := &spec.Spec{Name: "k", Kernel: kernel}
		s.SetDefaults()
		c, err := resolveBoot(context.Background(), dir, t.TempDir(), s, a)
		if err != nil {
			t.Fatal(err)
		}
		if c.Cmdline != want {
			t.Errorf("%s kernel boot without cmdline: cmdline %q, want %q", a, c.Cmdline, want)
		}
	}
}

func TestResolveDiskImage(t *testing.T) {
	qemuImg := testenv.Tool(t, "qemu-img", "qemu-utils")
	mbHome := t.TempDir()
	imgDir := writeImage(t, mbHome, "deb", "name: deb\ndisk: base.qcow2\nformat: qcow2\n")
	if out, err := exec.Command(qemuImg, "create", "-q", "-f", "qcow2", filepath.Join(imgDir, "base.qcow2"), "64M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	vmDir := t.TempDir()
	s := &spec.Spec{Name: "d", Image: "deb"}
	s.SetDefaults()
	c, err := resolveBoot(context.Background(), vmDir, mbHome, s, archX86_64)
	if err != nil {
		if strings.Contains(err.Error(), "UEFI firmware") {
			testenv.Need(t, fmt.Sprintf("UEFI firmware (apt-get install ovmf): %v", err))
		}
		t.Fatal(err)
	}
	overlay := filepath.Join(vmDir, "disk.qcow2")
	seed := filepath.Join(vmDir, "seed.iso")
	if len(c.Drives) != 2 || c.Drives[0].Path != overlay || c.Drives[0].Format != "qcow2" ||
		c.Drives[1].Path != seed || !c.Drives[1].ReadOnly {
		t.Fatalf("drives = %+v, want the overlay %s and the read-only cloud-init seed %s", c.Drives, overlay, seed)
	}
	if _, err := os.Stat(overlay); err != nil {
		t.Errorf("overlay not created: %v", err)
	}
	if c.FirmwareCode == "" || c.FirmwareVars != filepath.Join(vmDir, "efi-vars.fd") {
		t.Errorf("firmware = %q / %q", c.FirmwareCode, c.FirmwareVars)
	}
	if c.Kernel != "" || c.Cmdline != "" {
		t.Errorf("a disk boot got a kernel %q / cmdline %q", c.Kernel, c.Cmdline)
	}
}

// The attack of issue 10, item 1: root in the guest writes a qcow2 header
// naming a host file as backing file into its raw disk. The next start
// must still attach the disk as raw (the format stored at create), never
// probe it and hand QEMU the host file.
func TestResolveUserDiskKeepsStoredFormat(t *testing.T) {
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img not installed (apt-get install qemu-utils)")
	}
	dir := t.TempDir()
	secret := filepath.Join(dir, "host-secret")
	if err := os.WriteFile(secret, []byte(strings.Repeat("secret\n", 1024)), 0o600); err != nil {
		t.Fatal(err)
	}
	// A raw disk with an MBR signature: Probe calls it raw.
	raw := filepath.Join(dir, "user.img")
	mbr := make([]byte, 4<<20)
	mbr[510], mbr[511] = 0x55, 0xaa
	if err := os.WriteFile(raw, mbr, 0o600); err != nil {
		t.Fatal(err)
	}
	s := &spec.Spec{Name: "u", Disk: raw, Kernel: filepath.Join(dir, "vmlinuz")}
	if err := os.WriteFile(s.Kernel, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.SetDefaults()
	// What the daemon does at create.
	info, err := disk.Probe(context.Background(), raw)
	if err != nil || info.Format != "raw" {
		t.Fatalf("probe at create: %+v, %v", info, err)
	}
	s.DiskFormat = info.Format

	// The guest writes a qcow2 header with backing_file=host-secret over
	// the start of its disk.
	evil := filepath.Join(dir, "evil.qcow2")
	if out, err := exec.Command(qemuImg, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", secret, evil, "4M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	hdr, err := os.ReadFile(evil)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(raw, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(hdr[:4096], 0); err != nil {
		t.Fatal(err)
	}
	f.Close()

	c, err := resolveBoot(context.Background(), t.TempDir(), t.TempDir(), s, archX86_64)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Drives) == 0 || c.Drives[0].Path != raw || c.Drives[0].Format != "raw" {
		t.Fatalf("drives %+v: want %s attached as raw, the format stored at create", c.Drives, raw)
	}
	for _, a := range buildArgs(c) {
		if strings.Contains(a, "file="+raw) && !strings.Contains(a, "format=raw") {
			t.Errorf("-drive %s has no format=raw", a)
		}
	}

	// A spec without a stored format (from before disk_format) is probed
	// and refused, naming the host file, rather than attached as qcow2.
	s.DiskFormat = ""
	_, err = resolveBoot(context.Background(), t.TempDir(), t.TempDir(), s, archX86_64)
	if !errors.Is(err, disk.ErrReferencesFile) || !strings.Contains(err.Error(), secret) {
		t.Errorf("unstored format: err = %v, want ErrReferencesFile naming %s", err, secret)
	}
}

// A file QEMU writes in the VM directory (serial.log, qemu.pid, the disk
// overlay, the UEFI store) planted as a link is refused before QEMU runs.
func TestRefuseLinksInVMDir(t *testing.T) {
	for _, name := range qemuWrites {
		dir := t.TempDir()
		if err := refuseLinks(dir); err != nil {
			t.Fatalf("an empty VM directory: %v", err)
		}
		p := filepath.Join(dir, name)
		if err := os.Symlink(filepath.Join(t.TempDir(), "target"), p); err != nil {
			t.Fatal(err)
		}
		if err := refuseLinks(dir); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s a symlink: err = %v, want a refusal naming it", name, err)
		}
	}
}

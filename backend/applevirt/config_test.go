package applevirt

import (
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mbvm/mb/internal/testenv"
	"github.com/mbvm/mb/vm/spec"
)

// arm64Image writes a file with an arm64 Image header (the magic at 56).
func arm64Image(t *testing.T, dir string) string {
	t.Helper()
	b := make([]byte, 4096)
	binary.LittleEndian.PutUint32(b[56:], arm64ImageMagic)
	return writeFile(t, dir, "Image", b)
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func testSpec(t *testing.T, mod func(*spec.Spec)) *spec.Spec {
	t.Helper()
	s := &spec.Spec{Name: "dev-1", Backend: "applevirt", Memory: spec.Size(1000<<20 + 12345)}
	mod(s)
	s.SetDefaults()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBuildConfigKernelBoot(t *testing.T) {
	dir := t.TempDir()
	kernel := arm64Image(t, dir)
	initrd := writeFile(t, dir, "initrd", []byte("cpio"))
	share := t.TempDir()
	s := testSpec(t, func(s *spec.Spec) {
		s.Kernel, s.Initrd, s.Cmdline = kernel, initrd, "console=ttyS0 quiet"
		s.CPUs = 2
		s.Forwards = []spec.Forward{{Host: 8080, Guest: 80}}
		s.Shares = []spec.Share{{Host: share, Guest: "/mnt/src", ReadOnly: true}, {Host: share, Guest: "/mnt/b", Tag: "b"}}
	})
	c, err := BuildConfig(context.Background(), BuildOptions{Dir: dir, Spec: s, Arch: "arm64"})
	if err != nil {
		t.Fatal(err)
	}
	if c.CPUs != 2 || c.MemoryBytes != 1000<<20 {
		t.Errorf("cpus %d memory %d, want 2 and 1000 MiB (rounded down to whole MiB)", c.CPUs, c.MemoryBytes)
	}
	if c.Boot.Kind != BootLinux || c.Boot.Kernel != kernel || c.Boot.Initrd != initrd {
		t.Errorf("boot %+v", c.Boot)
	}
	if c.Boot.Cmdline != "quiet console=hvc0 mb.hostname=dev-1" {
		t.Errorf("cmdline %q: want ttyS0 dropped, console=hvc0 and mb.hostname added", c.Boot.Cmdline)
	}
	if len(c.Disks) != 0 {
		t.Errorf("disks %+v for a kernel boot without a disk", c.Disks)
	}
	want := []Share{{Tag: "mb-share-0", HostPath: share, Guest: "/mnt/src", ReadOnly: true}, {Tag: "b", HostPath: share, Guest: "/mnt/b"}}
	if len(c.Shares) != 2 || c.Shares[0] != want[0] || c.Shares[1] != want[1] {
		t.Errorf("shares %+v, want %+v", c.Shares, want)
	}
	if c.MAC.String() != MACFromName("dev-1").String() || !c.Entropy || !c.Balloon || c.AgentPort != AgentVsockPort || c.RelayPort != RelayVsockPort {
		t.Errorf("devices: %+v", c)
	}
	if c.SerialLog != filepath.Join(dir, SerialLogFile) {
		t.Errorf("serial log %s", c.SerialLog)
	}
}

func TestBuildConfigDiskBoot(t *testing.T) {
	dir := t.TempDir()
	home := t.TempDir()
	t.Setenv("HOME", home)
	disk := writeFile(t, dir, "root.img", make([]byte, 1<<16))
	s := testSpec(t, func(s *spec.Spec) { s.Disk = disk })
	c, err := BuildConfig(context.Background(), BuildOptions{Dir: dir, Spec: s, Arch: "arm64"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Boot.Kind != BootEFI || c.Boot.VariableStore != filepath.Join(dir, EFIVarsFile) || c.Boot.MachineID != filepath.Join(dir, MachineIDFile) {
		t.Errorf("boot %+v: want EFI with the VM's own variable store and machine id", c.Boot)
	}
	if len(c.Disks) != 2 || c.Disks[0].Path != disk || c.Disks[1].ReadOnly != true {
		t.Fatalf("disks %+v: want the root disk and the read-only seed", c.Disks)
	}
	for _, d := range c.Disks {
		if d.Caching != CachingCached || d.Sync != SyncFsync {
			t.Errorf("disk %s caching %q sync %q, want cached and fsync", d.Path, d.Caching, d.Sync)
		}
	}
}

func TestBuildConfigRefusals(t *testing.T) {
	dir := t.TempDir()
	qcow := writeFile(t, dir, "disk.qcow2", append([]byte("QFI\xfb"), make([]byte, 100)...))
	gz := writeFile(t, dir, "vmlinuz", append([]byte{0x1f, 0x8b, 8, 0}, make([]byte, 100)...))
	efiZboot := writeFile(t, dir, "vmlinuz.efi", append([]byte("MZ\x00\x00zimg"), make([]byte, 100)...))
	bz := writeFile(t, dir, "bzImage", make([]byte, 100))
	cases := []struct {
		name string
		mod  func(*spec.Spec)
		arch string
		want string
	}{
		{"qcow2 disk", func(s *spec.Spec) { s.Disk = qcow }, "arm64",
			"qemu-img convert -O raw " + qcow + " " + qcow + ".raw"},
		{"gzip arm64 kernel", func(s *spec.Spec) { s.Kernel = gz }, "arm64",
			"not an uncompressed arm64 Linux Image, which is all Apple's Linux boot loader starts: it is gzip-compressed: gunzip -c " + gz + " > Image"},
		{"zboot arm64 kernel", func(s *spec.Spec) { s.Kernel = efiZboot }, "arm64", "EFI zboot image"},
		{"missing kernel", func(s *spec.Spec) { s.Kernel = filepath.Join(dir, "nope") }, "amd64", "does not exist"},
		{"udp forward", func(s *spec.Spec) {
			s.Kernel = bz
			s.Forwards = []spec.Forward{{Host: 5353, Guest: 53, Proto: "udp"}}
		}, "amd64", "forwards TCP only"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := testSpec(t, tc.mod)
			_, err := BuildConfig(context.Background(), BuildOptions{Dir: dir, Spec: s, Arch: tc.arch})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	// An x86 kernel is not checked for the arm64 header.
	s := testSpec(t, func(s *spec.Spec) { s.Kernel = bz })
	if _, err := BuildConfig(context.Background(), BuildOptions{Dir: dir, Spec: s, Arch: "amd64"}); err != nil {
		t.Fatalf("amd64 kernel: %v", err)
	}
}

func TestMACFromName(t *testing.T) {
	a, b := MACFromName("dev-1"), MACFromName("dev-1")
	if a.String() != b.String() {
		t.Fatalf("MAC not stable: %s then %s", a, b)
	}
	seen := map[string]string{}
	for _, name := range []string{"dev-1", "dev-2", "a", "web", "db", "x-very-long-name-0123456789"} {
		m := MACFromName(name)
		if len(m) != 6 {
			t.Fatalf("%s: MAC %s is not 6 bytes", name, m)
		}
		if m[0]&0x02 == 0 || m[0]&0x01 != 0 {
			t.Errorf("%s: MAC %s is not locally administered unicast", name, m)
		}
		if other, dup := seen[m.String()]; dup {
			t.Errorf("%s and %s share MAC %s", name, other, m)
		}
		seen[m.String()] = name
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/a/b.qcow2":   "/a/b.qcow2",
		"/a b/c":       "'/a b/c'",
		"/it's/x":      `'/it'\''s/x'`,
		"/Users/me/~x": "/Users/me/~x",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// makeImage writes an image named name under home with the given manifest
// lines and files.
func makeImage(t *testing.T, home, name, manifest string, files map[string][]byte) string {
	t.Helper()
	dir := filepath.Join(home, "images", name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for f, data := range files {
		writeFile(t, dir, f, data)
	}
	writeFile(t, dir, "image.yaml", []byte("name: "+name+"\n"+manifest))
	return dir
}

// TestBuildConfigImages: a kernel image boots with the image's command
// line plus hvc0, and an image for another architecture is refused.
func TestBuildConfigImages(t *testing.T) {
	home := t.TempDir()
	kimg := makeImage(t, home, "mini", "arch: aarch64\nkernel: Image\ninitrd: initrd\ncmdline: console=ttyS0 mb.x=1\n",
		map[string][]byte{"initrd": []byte("cpio")})
	arm64Image(t, kimg)
	s := testSpec(t, func(s *spec.Spec) { s.Image = "mini"; s.Cmdline = "quiet" })
	c, err := BuildConfig(context.Background(), BuildOptions{Dir: t.TempDir(), Home: home, Spec: s, Arch: "arm64"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Boot.Kind != BootLinux || c.Boot.Kernel != filepath.Join(kimg, "Image") || c.Boot.Cmdline != "mb.x=1 quiet console=hvc0 mb.hostname=dev-1" {
		t.Fatalf("kernel image boot %+v", c.Boot)
	}
	if _, err := BuildConfig(context.Background(), BuildOptions{Dir: t.TempDir(), Home: home, Spec: s, Arch: "amd64"}); err == nil || !strings.Contains(err.Error(), "is for aarch64") {
		t.Fatalf("aarch64 image on amd64: %v", err)
	}
}

// TestBuildConfigDiskImages: a disk image boots through EFI from the VM's
// own raw disk, made once from the image's (copied when raw, converted by
// the real qemu-img when qcow2), grown to disk_size, the image untouched.
func TestBuildConfigDiskImages(t *testing.T) {
	qemuImg := testenv.Tool(t, "qemu-img", "qemu-utils")
	home := t.TempDir()
	t.Setenv("HOME", t.TempDir())
	// A qcow2 whose first sector holds a marker, to see it survive.
	src := filepath.Join(t.TempDir(), "src.raw")
	marker := []byte("mb-applevirt-marker")
	writeFile(t, filepath.Dir(src), "src.raw", append(marker, make([]byte, 1<<20-len(marker))...))
	qimg := makeImage(t, home, "deb", "arch: aarch64\ndisk: disk.qcow2\nformat: qcow2\n", nil)
	if out, err := exec.Command(qemuImg, "convert", "-f", "raw", "-O", "qcow2", src, filepath.Join(qimg, "disk.qcow2")).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
	rimg := makeImage(t, home, "debraw", "arch: aarch64\ndisk: disk.img\nformat: raw\n", map[string][]byte{"disk.img": append(marker, make([]byte, 4096)...)})
	for _, tc := range []struct{ image, base string }{{"deb", filepath.Join(qimg, "disk.qcow2")}, {"debraw", filepath.Join(rimg, "disk.img")}} {
		t.Run(tc.image, func(t *testing.T) {
			before, err := os.ReadFile(tc.base)
			if err != nil {
				t.Fatal(err)
			}
			vmdir := t.TempDir()
			s := testSpec(t, func(s *spec.Spec) { s.Image = tc.image; s.DiskSize = 4 << 20 })
			c, err := BuildConfig(context.Background(), BuildOptions{Dir: vmdir, Home: home, Spec: s, Arch: "arm64", Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			disk := filepath.Join(vmdir, DiskFile)
			if c.Boot.Kind != BootEFI || c.Disks[0].Path != disk {
				t.Fatalf("boot %+v disks %+v", c.Boot, c.Disks)
			}
			got, err := os.ReadFile(disk)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(got), string(marker)) || len(got) != 4<<20 {
				t.Fatalf("VM disk: %d bytes starting %q; want the image's content grown to 4 MiB", len(got), got[:min(len(got), 20)])
			}
			if after, _ := os.ReadFile(tc.base); string(after) != string(before) {
				t.Fatal("the image's disk changed")
			}
			// A second start keeps the VM's disk (and what the guest wrote).
			if err := os.WriteFile(disk, []byte("guest data"), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := BuildConfig(context.Background(), BuildOptions{Dir: vmdir, Home: home, Spec: s, Arch: "arm64", Logger: testLogger(t)}); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(disk); !strings.HasPrefix(string(got), "guest data") {
				t.Fatal("the second start replaced the VM's disk")
			}
		})
	}
	// Without qemu-img, the error gives the command to run.
	t.Setenv("PATH", t.TempDir())
	vmdir := t.TempDir()
	s := testSpec(t, func(s *spec.Spec) { s.Image = "deb" })
	want := "qemu-img convert -O raw " + filepath.Join(qimg, "disk.qcow2") + " " + filepath.Join(vmdir, DiskFile)
	if _, err := BuildConfig(context.Background(), BuildOptions{Dir: vmdir, Home: home, Spec: s, Arch: "arm64", Logger: testLogger(t)}); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "brew install qemu") {
		t.Fatalf("qcow2 image without qemu-img: %v, want %q", err, want)
	}
}

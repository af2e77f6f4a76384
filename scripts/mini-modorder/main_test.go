package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeModule writes a minimal ELF64 relocatable file whose only content is
// a .modinfo section, which is all mini-modorder reads.
func writeModule(t *testing.T, path string, modinfo ...string) {
	t.Helper()
	info := []byte(strings.Join(modinfo, "\x00") + "\x00")
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	const ehsize, shentsize = 64, 64
	infoOff := uint64(ehsize)
	strOff := infoOff + uint64(len(info))
	shOff := strOff + uint64(len(shstr))
	var b bytes.Buffer
	le := binary.LittleEndian
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	for _, v := range []any{uint16(1), uint16(62), uint32(1), uint64(0), uint64(0), shOff,
		uint32(0), uint16(ehsize), uint16(0), uint16(0), uint16(shentsize), uint16(3), uint16(2)} {
		if err := binary.Write(&b, le, v); err != nil {
			t.Fatal(err)
		}
	}
	b.Write(info)
	b.Write(shstr)
	section := func(name, typ uint32, flags, off, size uint64) {
		for _, v := range []any{name, typ, flags, uint64(0), off, size, uint32(0), uint32(0), uint64(1), uint64(0)} {
			if err := binary.Write(&b, le, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	section(0, 0, 0, 0, 0)
	section(1, 1, 2, infoOff, uint64(len(info)))  // .modinfo, PROGBITS, ALLOC
	section(10, 3, 0, strOff, uint64(len(shstr))) // .shstrtab, STRTAB
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestModulesDepAndOrder(t *testing.T) {
	tree := t.TempDir()
	writeModule(t, filepath.Join(tree, "kernel/virtio/virtio_ring.ko"), "license=GPL", "depends=")
	writeModule(t, filepath.Join(tree, "kernel/virtio/virtio.ko"), "depends=virtio_ring", "name=virtio")
	writeModule(t, filepath.Join(tree, "kernel/net/failover.ko"), "depends=")
	writeModule(t, filepath.Join(tree, "kernel/net/net_failover.ko"), "depends=failover")
	writeModule(t, filepath.Join(tree, "kernel/net/virtio_net.ko"), "depends=virtio,net_failover")
	writeModule(t, filepath.Join(tree, "kernel/misc/pvpanic-pci.ko"), "depends=pvpanic")
	writeModule(t, filepath.Join(tree, "kernel/misc/pvpanic.ko"), "depends=")
	if err := os.WriteFile(filepath.Join(tree, "modules.builtin"), []byte("kernel/input/evdev.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	var out, errOut bytes.Buffer
	if err := run(&out, &errOut, tree, []string{"virtio_net", "pvpanic-pci", "evdev", "?gpio_keys"}); err != nil {
		t.Fatal(err)
	}
	dep, err := os.ReadFile(filepath.Join(tree, "modules.dep"))
	if err != nil {
		t.Fatalf("modules.dep not written: %v", err)
	}
	// Transitive dependencies, as depmod lists them.
	for _, want := range []string{
		"kernel/net/virtio_net.ko: kernel/virtio/virtio.ko kernel/virtio/virtio_ring.ko kernel/net/net_failover.ko kernel/net/failover.ko\n",
		"kernel/virtio/virtio_ring.ko:\n",
		"kernel/misc/pvpanic-pci.ko: kernel/misc/pvpanic.ko\n",
	} {
		if !strings.Contains(string(dep), want) {
			t.Errorf("modules.dep lacks %q:\n%s", want, dep)
		}
	}
	want := strings.Join([]string{
		"kernel/virtio/virtio_ring.ko",
		"kernel/virtio/virtio.ko",
		"kernel/net/failover.ko",
		"kernel/net/net_failover.ko",
		"kernel/net/virtio_net.ko",
		"kernel/misc/pvpanic.ko",
		"kernel/misc/pvpanic-pci.ko",
	}, "\n") + "\n"
	if out.String() != want {
		t.Errorf("load order:\n%s\nwant:\n%s", out.String(), want)
	}
	if !strings.Contains(errOut.String(), "evdev is built into the kernel") {
		t.Errorf("no note about the built-in evdev: %q", errOut.String())
	}
	if !strings.Contains(errOut.String(), "optional module gpio_keys is not in this kernel") {
		t.Errorf("no note about the absent optional gpio_keys: %q", errOut.String())
	}
	out.Reset()
	if err := run(&out, &errOut, tree, []string{"?virtio"}); err != nil || out.String() != "kernel/virtio/virtio_ring.ko\nkernel/virtio/virtio.ko\n" {
		t.Errorf("an optional module that exists is loaded with its deps: got %q, %v", out.String(), err)
	}

	if err := run(&out, &errOut, tree, []string{"nosuch"}); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("unknown module: err = %v, want one naming it", err)
	}
}

func TestMissingDependency(t *testing.T) {
	tree := t.TempDir()
	writeModule(t, filepath.Join(tree, "a.ko"), "depends=gone")
	var out, errOut bytes.Buffer
	err := run(&out, &errOut, tree, []string{"a"})
	if err == nil || !strings.Contains(err.Error(), "gone") {
		t.Errorf("err = %v, want one naming the missing module", err)
	}
}

package guestinit

import (
	"slices"
	"strings"
	"testing"
)

// A trimmed copy of Debian 12's cloud kernel modules.dep.
const testModulesDep = `kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/misc/pvpanic/pvpanic-pci.ko.xz:
kernel/drivers/acpi/button.ko:
kernel/drivers/input/evdev.ko:
`

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/drivers/misc/pvpanic/pvpanic-pci.ko.xz": "pvpanic_pci",
		"kernel/drivers/virtio/virtio_ring.ko":          "virtio_ring",
		"a/b/c.ko.zst":                                  "c",
		"evdev":                                         "evdev",
	} {
		if got := ModuleName(in); got != want {
			t.Errorf("ModuleName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLoadOrder(t *testing.T) {
	d, err := ParseModulesDep(strings.NewReader(testModulesDep))
	if err != nil {
		t.Fatal(err)
	}
	order, err := d.LoadOrder("virtio_pci", "virtio_net", "virtio-console", "pvpanic-pci", "button", "evdev")
	if err != nil {
		t.Fatal(err)
	}
	// Every module once.
	seen := map[string]bool{}
	for _, p := range order {
		if seen[p] {
			t.Errorf("%s appears twice in %q", p, order)
		}
		seen[p] = true
	}
	if len(order) != 12 {
		t.Errorf("got %d modules, want 12: %q", len(order), order)
	}
	// Every module after all of its dependencies.
	pos := map[string]int{}
	for i, p := range order {
		pos[p] = i
	}
	for _, p := range order {
		for _, dep := range d.Deps[p] {
			if pos[dep] > pos[p] {
				t.Errorf("%s is loaded before its dependency %s: %q", p, dep, order)
			}
		}
	}
	if pos["kernel/drivers/virtio/virtio_ring.ko"] > pos["kernel/drivers/virtio/virtio.ko"] {
		t.Errorf("virtio_ring must come before virtio (as listed in modules.dep): %q", order)
	}
	// Stable: the same input gives the same order.
	again, _ := d.LoadOrder("virtio_pci", "virtio_net", "virtio-console", "pvpanic-pci", "button", "evdev")
	if !slices.Equal(order, again) {
		t.Errorf("order is not stable: %q vs %q", order, again)
	}
}

func TestLoadOrderErrors(t *testing.T) {
	d, err := ParseModulesDep(strings.NewReader(testModulesDep))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.LoadOrder("nosuch"); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("unknown module: err = %v, want one naming it", err)
	}
	cyc, err := ParseModulesDep(strings.NewReader("a.ko: b.ko\nb.ko: a.ko\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cyc.LoadOrder("a"); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("cycle: err = %v, want a cycle error", err)
	}
	missing, err := ParseModulesDep(strings.NewReader("a.ko: gone.ko\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := missing.LoadOrder("a"); err == nil || !strings.Contains(err.Error(), "gone.ko") {
		t.Errorf("missing dependency line: err = %v, want one naming gone.ko", err)
	}
	if _, err := ParseModulesDep(strings.NewReader("no colon here\n")); err == nil {
		t.Error("a line without a colon parsed without error")
	}
}

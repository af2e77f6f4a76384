package snapshot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCompatibleNamesEveryDifference(t *testing.T) {
	saved := Machine{Backend: "qemu", QEMUVersion: "7.2.22", Machine: "q35", Arch: "x86_64", Accel: "tcg", CPUs: 1, MemoryMiB: 256}
	if err := Compatible(saved, saved); err != nil {
		t.Fatalf("the same machine: %v", err)
	}
	now := saved
	now.MemoryMiB, now.QEMUVersion = 512, "8.2.0"
	err := Compatible(saved, now)
	if err == nil {
		t.Fatal("a different memory size and QEMU were accepted")
	}
	for _, want := range []string{"memory 256 MiB (saved) vs 512 MiB (now)", "QEMU version 7.2.22 (saved) vs 8.2.0 (now)", "--cold"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
}

// A state file that is shorter than recorded, or altered, is refused; a
// manifest is written 0600 and read back.
func TestVerifyRefusesDamagedState(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, StateName)
	if err := os.WriteFile(state, []byte("device state"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(state)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := HashFile(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	m := &Manifest{Kind: "suspend", RAM: RAMStream, State: File{Path: StateName, Size: 12, SHA256: sum}}
	if err := Write(dir, ManifestName, m); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dir, ManifestName)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("manifest: %v, mode %v", err, st.Mode().Perm())
	}
	got, err := Read(dir, ManifestName)
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Verify(dir); err != nil {
		t.Fatalf("an intact state: %v", err)
	}
	if err := os.WriteFile(state, []byte("device stat"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := got.Verify(dir); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("a truncated state: %v", err)
	}
	if err := os.WriteFile(state, []byte("device stale"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := got.Verify(dir); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("an altered state: %v", err)
	}
	if err := Discard(dir); err != nil {
		t.Fatal(err)
	}
	if Suspended(dir) {
		t.Error("Discard left the manifest")
	}
}

func TestSnapshotPaths(t *testing.T) {
	home := "/h"
	if vm, snap, ok := DiskOf(home, "/h/vms/a/snapshots/s1/disk.qcow2"); !ok || vm != "a" || snap != "s1" {
		t.Errorf("DiskOf: %q %q %v", vm, snap, ok)
	}
	for _, p := range []string{"/h/vms/a/disk.qcow2", "/h/vms/a/snapshots/.s1.tmp/disk.qcow2", "/etc/passwd", "/h/vms/../x/snapshots/s/disk.qcow2", "/h/vms/a/snapshots/s1/state"} {
		if _, _, ok := DiskOf(home, p); ok {
			t.Errorf("DiskOf accepted %s", p)
		}
	}
	if !InSnapshot(home, "/h/vms/a/snapshots/s1/memory.ram") || InSnapshot(home, "/h/vms/a/memory.ram") || InSnapshot(home, "/h/vms/a/snapshots/s1/../../../../etc/shadow") {
		t.Error("InSnapshot misjudges a path")
	}
}

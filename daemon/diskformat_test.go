package daemon

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mbvm/mb/internal/testenv"
	"github.com/mbvm/mb/vm/disk"
	"github.com/mbvm/mb/vm/spec"
)

// Creating a VM decides its disk's format once and stores it in the spec;
// a disk that names a host file is refused at create.
func TestCreateStoresDiskFormat(t *testing.T) {
	testenv.Tool(t, "qemu-img", "qemu-utils")
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	b := make([]byte, 1<<20)
	b[510], b[511] = 0x55, 0xaa
	if err := os.WriteFile(raw, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s := &spec.Spec{Name: "d", Disk: raw}
	s.SetDefaults()
	if err := decideDiskFormat(s); err != nil {
		t.Fatal(err)
	}
	if s.DiskFormat != "raw" {
		t.Errorf("disk_format %q, want raw stored at create", s.DiskFormat)
	}

	evil := filepath.Join(dir, "evil.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", raw, evil, "1M").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, given := range []string{"", "qcow2"} {
		s := &spec.Spec{Name: "e", Disk: evil, DiskFormat: given}
		s.SetDefaults()
		if err := decideDiskFormat(s); !errors.Is(err, disk.ErrReferencesFile) || !strings.Contains(err.Error(), raw) {
			t.Errorf("disk_format %q: err = %v, want ErrReferencesFile naming %s", given, err, raw)
		}
	}
}

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mb start -f with a spec over 1 MiB fails with one short line (it created
// the VM from a truncated spec, then printed a 2 MB error).
func TestStartHugeSpecFile(t *testing.T) {
	e := newEnv(t)
	var b strings.Builder
	b.WriteString("name: big\nbackend: fake\nuser_data: |\n")
	for b.Len() < 1200<<10 {
		b.WriteString("  # padding padding padding padding padding padding padding padding\n")
	}
	b.WriteString("cpus: 4\n")
	f := filepath.Join(e.home, "big.yaml")
	if err := os.WriteFile(f, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.mb("start", "big", "-f", f)
	if r.code == 0 || len(r.stderr) > 300 || !strings.Contains(r.stderr, "1 MiB") {
		t.Fatalf("mb start -f big.yaml: exit %d, %d bytes on stderr: %.300s; want a failure in one short line naming 1 MiB", r.code, len(r.stderr), r.stderr)
	}
	if vms := e.list(); len(vms) != 0 {
		t.Errorf("VMs after the refused start: %+v", vms)
	}
}

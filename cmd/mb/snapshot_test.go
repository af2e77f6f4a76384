package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/vm/snapshot"
)

// A VM with host folder shares cannot be suspended, snapshotted or cloned
// (QEMU cannot save virtiofs state): each says so and names mb stop.
func TestSuspendRefusesSharesFake(t *testing.T) {
	e := newEnv(t)
	share := filepath.Join(e.root, "share")
	if err := os.Mkdir(share, 0o700); err != nil {
		t.Fatal(err)
	}
	specPath := filepath.Join(e.root, "fs.yaml")
	doc := "name: fs\nbackend: fake\nshares:\n  - host: " + share + "\n    guest: /mnt/s\n"
	if err := os.WriteFile(specPath, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	e.ok("start", "fs", "-f", specPath)
	for _, args := range [][]string{{"suspend", "fs"}, {"snapshot", "save", "fs", "s1"}, {"clone", "fs", "fs2"}} {
		r := e.mb(args...)
		if r.code == 0 || !strings.Contains(r.stderr, "host folder shares") || !strings.Contains(r.stderr, "mb stop fs") {
			t.Errorf("mb %s: want a refusal naming the shares and mb stop, got %s", strings.Join(args, " "), r)
		}
	}
	if s := e.vm("fs").State; s != api.StateRunning {
		t.Errorf("after the refusals the VM is %s, want running", s)
	}
	if r := e.mb("info", "fs2"); r.code == 0 {
		t.Error("a refused clone left a VM fs2 behind")
	}
}

// snapshotAndClone runs on the running mini VM name of TestQEMUSuspendResume:
// a snapshot, a start --from it, and two clones of it.
func snapshotAndClone(t *testing.T, e *testEnv, name string, plant func(*testing.T) (string, string), survived func(*testing.T, string, string)) {
	marker, pid := plant(t)
	var s api.Snapshot
	if err := json.Unmarshal([]byte(e.ok("snapshot", "save", name, "s1", "--json")), &s); err != nil {
		t.Fatal(err)
	}
	if s.Name != "s1" || s.SizeBytes == 0 {
		t.Fatalf("mb snapshot save --json: %+v", s)
	}
	sdir := snapshot.Dir(filepath.Join(e.home, "vms", name), "s1")
	for _, f := range []string{snapshot.SnapManifest, snapshot.SnapState, snapshot.SnapMemory} {
		st, err := os.Stat(filepath.Join(sdir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("snapshot file %s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	var list []api.Snapshot
	if err := json.Unmarshal([]byte(e.ok("snapshot", "ls", name, "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "s1" || list[0].SizeBytes == 0 {
		t.Fatalf("mb snapshot ls --json: %+v", list)
	}
	// The VM ran on after the snapshot; now it moves on and goes back.
	survived(t, marker, pid)
	e.ok("exec", name, "--", "sh", "-c", "echo later > /marker")
	e.ok("stop", name)
	e.ok("start", name, "--from", "s1")
	survived(t, marker, pid)

	e.ok("clone", name, "c1", "c2", "--from", "s1")
	seen := map[string]bool{}
	for _, c := range []string{"c1", "c2"} {
		out := e.ok("exec", c, "--", "sh", "-c", "cat /marker; kill -0 "+pid+" && echo alive; hostname; od -An -N16 -tx1 /dev/urandom")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 || lines[0] != marker || lines[1] != "alive" {
			t.Fatalf("clone %s lost the snapshot's memory: %q", c, out)
		}
		e.eventually("clone "+c+"'s own hostname", func() bool {
			return strings.TrimSpace(e.ok("exec", c, "--", "hostname")) == c
		})
		if seen[lines[3]] {
			t.Errorf("two clones read the same random bytes %s", lines[3])
		}
		seen[lines[3]] = true
	}
	// Writes are the clone's own.
	e.ok("exec", "c1", "--", "sh", "-c", "echo c1 > /only-c1")
	for _, other := range []string{"c2", name} {
		if out := e.ok("exec", other, "--", "sh", "-c", "cat /only-c1 2>/dev/null || echo none"); strings.TrimSpace(out) != "none" {
			t.Errorf("a write in clone c1 shows in %s: %q", other, out)
		}
	}
	e.ok("rm", "--force", "c1", "c2")
	e.ok("snapshot", "rm", name, "s1")
	if out := strings.TrimSpace(e.ok("snapshot", "ls", name, "--json")); out != "[]" {
		t.Errorf("after mb snapshot rm, mb snapshot ls --json printed %s", out)
	}
}

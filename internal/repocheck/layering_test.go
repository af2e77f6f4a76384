package repocheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/mbvm/mb"

// layers ranks every package of the module, from the plumbing at the bottom
// to the programs at the top. A package may import packages of a lower rank,
// and packages of its own rank under the same top-level directory (daemon
// may import daemon/api, vm/image may import vm/disk), nothing else. The
// first matching prefix wins, so the longer prefixes come first.
var layers = []struct {
	prefix string
	rank   int
}{
	{"internal/", 0},
	{"agent/qgaproto", 1},
	{"agent/internal/", 1},
	{"vm/", 1},
	{"vmhost/process", 4},
	{"vmhost", 2},
	{"agent", 2},
	{"backend/", 3},
	{"monitor", 5},
	{"daemon", 6},
	{"cmd/", 7},
}

// testSupport lists packages that only tests, benchmarks and build scripts
// link: they may import anything, and no product package may import them.
var testSupport = []string{"bench", "failtest", "scripts/"}

func rel(pkg string) string { return strings.TrimPrefix(strings.TrimPrefix(pkg, module), "/") }

func hasPrefix(p, prefix string) bool {
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(p, prefix)
	}
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

func isTestSupport(p string) bool {
	for _, t := range testSupport {
		if hasPrefix(p, t) {
			return true
		}
	}
	return false
}

func rankOf(p string) (int, bool) {
	for _, l := range layers {
		if hasPrefix(p, l.prefix) {
			return l.rank, true
		}
	}
	return 0, false
}

func topDir(p string) string { return strings.SplitN(p, "/", 2)[0] }

// importRule says why from may not import to, or "" when it may.
func importRule(from, to string) string {
	if isTestSupport(from) {
		return ""
	}
	if isTestSupport(to) {
		return "product code imports a test-support package"
	}
	fr, ok1 := rankOf(from)
	tr, ok2 := rankOf(to)
	switch {
	case !ok1:
		return fmt.Sprintf("%s has no layer: add it to the table in internal/repocheck", from)
	case !ok2:
		return fmt.Sprintf("%s has no layer: add it to the table in internal/repocheck", to)
	case tr < fr:
		return ""
	case tr == fr && topDir(from) == topDir(to):
		return ""
	}
	return fmt.Sprintf("rank %d imports rank %d: dependencies point down (cmd -> daemon -> monitor -> vmhost/process -> backend -> vmhost, agent -> vm, wire types -> internal)", fr, tr)
}

type listed struct {
	ImportPath string
	Imports    []string
}

// modulePackages lists the module's packages with their non-test imports,
// for one GOOS, so build-tagged files of other platforms count too.
func modulePackages(t *testing.T, goos string) []listed {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports", "./...")
	cmd.Dir = "../.."
	cmd.Env = append(cmd.Environ(), "GOOS="+goos, "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list (GOOS=%s): %v\n%s", goos, err, stderr.String())
	}
	var pkgs []listed
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p listed
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("decode go list: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// TestLayering fails when a package imports across the layers: backend
// importing daemon, plumbing under internal/ importing what sits above it,
// the guest agent importing the host side, product code importing test
// helpers. It checks the import lists of linux and darwin builds.
func TestLayering(t *testing.T) {
	var bad []string
	seen := map[string]bool{}
	for _, goos := range []string{"linux", "darwin"} {
		for _, p := range modulePackages(t, goos) {
			from := rel(p.ImportPath)
			for _, imp := range p.Imports {
				if !strings.HasPrefix(imp, module+"/") {
					continue
				}
				to := rel(imp)
				if why := importRule(from, to); why != "" {
					line := fmt.Sprintf("%s imports %s: %s", from, to, why)
					if !seen[line] {
						seen[line] = true
						bad = append(bad, line)
					}
				}
			}
		}
	}
	sort.Strings(bad)
	for _, b := range bad {
		t.Error(b)
	}
}

// TestLayeringRules checks the rule itself on imports the design forbids
// and allows, so a broken table cannot pass everything.
func TestLayeringRules(t *testing.T) {
	for _, tc := range []struct {
		from, to string
		ok       bool
	}{
		{"backend/qemu", "daemon", false},
		{"backend/qemu", "daemon/api", false},
		{"internal/layout", "vm/spec", false},
		{"internal/logfile", "internal/atomicfile", true},
		{"agent", "vmhost", false},
		{"agent/qga", "vmhost", false},
		{"agent", "agent/qgaproto", true},
		{"vmhost", "backend/qemu", false},
		{"vmhost/process", "backend/qemu", true},
		{"daemon", "daemon/api", true},
		{"daemon", "bench/rig", false},
		{"bench/rig", "daemon", true},
		{"vm/image", "vm/disk", true},
		{"monitor", "daemon", false},
		{"daemon", "monitor", true},
		{"cmd/mb", "daemon", true},
		{"newthing", "internal/layout", false},
	} {
		why := importRule(tc.from, tc.to)
		if (why == "") != tc.ok {
			t.Errorf("%s -> %s: allowed=%v (%q), want allowed=%v", tc.from, tc.to, why == "", why, tc.ok)
		}
	}
}

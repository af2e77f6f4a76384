package main

import (
	"os/exec"
	"strings"
	"testing"
)

// mb-agent runs in the guest: it must link nothing of the host side. The
// wire types it shares with the host come from agent/qgaproto. The host's
// agent client (agent/qga) stays free of vmhost too, so the line between
// the two sides is drawn by the backends.
func TestLinksNothingHostSide(t *testing.T) {
	const mod = "github.com/mbvm/mb/"
	hostSide := []string{"vmhost", "daemon", "backend", "internal/peercred", "internal/atomicfile", "vm", "monitor", "agent/qga"}
	checkDeps(t, ".", hostSide)
	checkDeps(t, mod+"agent/qga", hostSide[:len(hostSide)-1])
	// The wire types stand alone: no client, no server, nothing of mb.
	checkDeps(t, mod+"agent/qgaproto", []string{"agent", "vmhost", "daemon", "backend", "internal", "vm", "monitor", "cmd"})
}

func checkDeps(t *testing.T, pkgPath string, hostSide []string) {
	t.Helper()
	const mod = "github.com/mbvm/mb/"
	out, err := exec.Command("go", "list", "-deps", pkgPath).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkgPath, err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		rel, ok := strings.CutPrefix(pkg, mod)
		if !ok {
			continue
		}
		for _, h := range hostSide {
			if rel != strings.TrimPrefix(pkgPath, mod) && (rel == h || strings.HasPrefix(rel, h+"/")) {
				t.Errorf("%s links host-side package %s", pkgPath, pkg)
			}
		}
	}
}

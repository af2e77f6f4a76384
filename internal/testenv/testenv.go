// Package testenv holds the one rule every test follows when the machine
// lacks something it needs (a tool, an image, QEMU, root): the test is
// skipped when run by hand, and fails under `make test`, which installs
// everything and sets MB_REQUIRE_VM=1. No test keeps a skip rule of its own.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// RequireEnv, set to 1, turns every missing prerequisite into a failure
// (`make test` sets it).
const RequireEnv = "MB_REQUIRE_VM"

// Required reports whether missing prerequisites fail the test.
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// Need ends a test that cannot run here because what is missing: a failure
// under MB_REQUIRE_VM=1, a skip otherwise. what should say how to get it.
func Need(t testing.TB, what string) {
	t.Helper()
	if Required() {
		t.Fatalf("%s=1 but %s", RequireEnv, what)
	}
	t.Skipf("skipped: %s (set %s=1 to make this a failure)", what, RequireEnv)
}

// Tool returns the path of the named program, or ends the test through
// Need with the Debian package that provides it.
func Tool(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Need(t, name+" is not installed (apt-get install "+debianPackage+")")
	}
	return p
}

// Root ends the test through Need unless it runs as root.
func Root(t testing.TB, why string) {
	t.Helper()
	if os.Getuid() != 0 {
		Need(t, "the test needs root: "+why)
	}
}

package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestNeedFailsWhenRequired runs a child test that calls Need, with and
// without MB_REQUIRE_VM=1, and checks it fails in one case and skips in the
// other.
func TestNeedFailsWhenRequired(t *testing.T) {
	if os.Getenv("MB_TESTENV_CHILD") == "1" {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		require string
		fail    bool
		want    string
	}{
		{"1", true, "MB_REQUIRE_VM=1 but frobnicator-that-does-not-exist is not installed"},
		{"", false, "--- SKIP: TestChildNeedsTool"},
	} {
		cmd := exec.Command(exe, "-test.run=^TestChildNeedsTool$", "-test.v")
		cmd.Env = append(os.Environ(), "MB_TESTENV_CHILD=1", RequireEnv+"="+tc.require)
		out, err := cmd.CombinedOutput()
		if (err != nil) != tc.fail {
			t.Errorf("%s=%q: child error %v, want failure %v:\n%s", RequireEnv, tc.require, err, tc.fail, out)
		}
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("%s=%q: output lacks %q:\n%s", RequireEnv, tc.require, tc.want, out)
		}
	}
}

// TestChildNeedsTool is run only as a child of TestNeedFailsWhenRequired.
func TestChildNeedsTool(t *testing.T) {
	if os.Getenv("MB_TESTENV_CHILD") != "1" {
		return
	}
	Tool(t, "frobnicator-that-does-not-exist", "frobnicator")
	t.Error("Tool returned for a missing program")
}

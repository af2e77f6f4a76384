package daemon

import (
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
)

// KeptEnv lists the environment variables the daemon keeps, and passes to
// every vmhost: the daemon runs with a clean environment, so that the
// shell of whichever mb command started it does not decide how every VM
// runs. Variables whose names start with KeptEnvPrefix (the fake
// backend's test knobs) are kept too.
var KeptEnv = []string{
	"PATH",            // finds qemu-system-* and qemu-img
	"HOME",            // the default $MB_HOME
	"USER", "LOGNAME", // who runs the daemon
	"MB_HOME",         // the state directory
	"MB_ACCEL",        // forces the accelerator of every QEMU VM
	"MB_VMHOST",       // the vmhost binary
	"TMPDIR",          // temporary files
	"XDG_RUNTIME_DIR", // per-user runtime files
	"LANG", "LC_ALL", "TZ",
}

// KeptEnvPrefix marks the test harness's knobs, kept by the daemon.
const KeptEnvPrefix = "MB_FAKE_"

// CleanEnv returns the entries of environ that the daemon keeps, sorted.
func CleanEnv(environ []string) []string {
	keep := map[string]bool{}
	for _, k := range KeptEnv {
		keep[k] = true
	}
	var out []string
	for _, kv := range environ {
		k, _, ok := strings.Cut(kv, "=")
		if ok && (keep[k] || strings.HasPrefix(k, KeptEnvPrefix)) {
			out = append(out, kv)
		}
	}
	sort.Strings(out)
	return out
}

// QEMUName is the qemu-system binary for this host's architecture.
func QEMUName() string {
	if runtime.GOARCH == "arm64" {
		return "qemu-system-aarch64"
	}
	return "qemu-system-x86_64"
}

// FindQEMU returns the QEMU binary the current PATH finds, or "".
func FindQEMU() string {
	p, err := exec.LookPath(QEMUName())
	if err != nil {
		return ""
	}
	return p
}

// envValue returns the value of key in environ, or "".
func envValue(environ []string, key string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// vmhostEnv is the environment of a vmhost: the daemon's clean
// environment with MB_HOME set to the daemon's home.
func vmhostEnv(home string) []string {
	return append(withoutEnv(CleanEnv(os.Environ()), "MB_HOME"), "MB_HOME="+home)
}

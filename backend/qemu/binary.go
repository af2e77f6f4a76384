package qemu

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"time"
)

// arch is a guest architecture as QEMU names it.
type arch string

const (
	archX86_64  arch = "x86_64"
	archAArch64 arch = "aarch64"
)

// hostArch maps GOARCH to the QEMU architecture.
func hostArch(goarch string) (arch, error) {
	switch goarch {
	case "amd64":
		return archX86_64, nil
	case "arm64":
		return archAArch64, nil
	}
	return "", fmt.Errorf("no QEMU backend for host architecture %s: mb supports amd64 and arm64", goarch)
}

// binaryName is the qemu-system binary for an architecture.
func binaryName(a arch) string { return "qemu-system-" + string(a) }

// qemuVersion is a parsed `qemu-system-* --version`.
type qemuVersion struct {
	Major, Minor, Micro int
}

func (v qemuVersion) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Micro) }

// atLeast reports whether v >= major.minor.
func (v qemuVersion) atLeast(major, minor int) bool {
	return v.Major > major || (v.Major == major && v.Minor >= minor)
}

// The oldest QEMU mb runs: -action panic=exit-failure (7.1) is needed to
// report a guest panic as a crash.
const (
	minMajor = 7
	minMinor = 1
)

var versionRE = regexp.MustCompile(`QEMU emulator version (\d+)\.(\d+)(?:\.(\d+))?`)

// parseVersion reads the first line of `qemu-system-* --version`.
func parseVersion(out []byte) (qemuVersion, error) {
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return qemuVersion{}, fmt.Errorf("unrecognised version output %q", firstLine(out))
	}
	var v qemuVersion
	v.Major, _ = strconv.Atoi(string(m[1]))
	v.Minor, _ = strconv.Atoi(string(m[2]))
	if len(m[3]) > 0 {
		v.Micro, _ = strconv.Atoi(string(m[3]))
	}
	return v, nil
}

// installHint says how to install QEMU on this host.
func installHint(a arch) string {
	if runtime.GOOS == "darwin" {
		return "install it with: brew install qemu"
	}
	pkg := "qemu-system-x86"
	if a == archAArch64 {
		pkg = "qemu-system-arm"
	}
	return "install it with: sudo apt-get install " + pkg + " (or your distribution's QEMU package)"
}

// qemuBinary is a located and version-checked QEMU binary.
type qemuBinary struct {
	Path    string
	Version qemuVersion
}

// findBinary locates name (a bare name is looked up in PATH) and checks its
// version. The version comes from cache when the binary is unchanged since
// it was last checked, so `--version` runs once per installed binary, not on
// every start.
func findBinary(ctx context.Context, name string, a arch, cache versionCache) (qemuBinary, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return qemuBinary{}, fmt.Errorf("QEMU binary %s not found: %w; %s", name, err, installHint(a))
	}
	v, ok := cache.lookup(path)
	if !ok {
		if v, err = runVersion(ctx, path, a); err != nil {
			return qemuBinary{}, err
		}
	}
	if !v.atLeast(minMajor, minMinor) {
		return qemuBinary{}, fmt.Errorf("%s is QEMU %s, mb needs %d.%d or newer; %s", path, v, minMajor, minMinor, installHint(a))
	}
	if !ok {
		cache.store(path, v)
	}
	return qemuBinary{Path: path, Version: v}, nil
}

// runVersion runs `path --version` and parses its answer.
func runVersion(ctx context.Context, path string, a arch) (qemuVersion, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, firstLine(ee.Stderr))
		}
		return qemuVersion{}, fmt.Errorf("run %s --version: %w; reinstall QEMU (%s)", path, err, installHint(a))
	}
	v, err := parseVersion(out)
	if err != nil {
		return qemuVersion{}, fmt.Errorf("%s --version: %w", path, err)
	}
	return v, nil
}

func firstLine(b []byte) string {
	for i, c := range b {
		if c == '\n' {
			return string(b[:i])
		}
	}
	return string(b)
}

package disk

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
)

// Firmware is a UEFI firmware: read-only code and the template of its
// variable store, which each VM copies (VarsFile) and may write.
type Firmware struct {
	Code string
	Vars string
}

// VarsFile is the VM's own copy of the UEFI variable store.
const VarsFile = "efi-vars.fd"

// firmwarePair is one known place of a code file and its matching vars
// template (they must come from the same build: sizes must agree).
type firmwarePair struct{ code, vars string }

// brewPrefixes are the Homebrew prefixes whose share/qemu holds edk2.
var brewPrefixes = []string{"/opt/homebrew", "/usr/local", "/home/linuxbrew/.linuxbrew"}

// firmwareCandidates lists where distributions and Homebrew put UEFI
// firmware for arch ("x86_64" or "aarch64"), best first.
func firmwareCandidates(arch string) []firmwarePair {
	var c []firmwarePair
	switch arch {
	case "x86_64":
		c = []firmwarePair{
			// Debian and Ubuntu (ovmf), 4 MiB build, then the older 2 MiB one.
			{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"},
			{"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},
			// Fedora (edk2-ovmf).
			{"/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"},
			// Arch (edk2-ovmf).
			{"/usr/share/edk2/x64/OVMF_CODE.4m.fd", "/usr/share/edk2/x64/OVMF_VARS.4m.fd"},
			// QEMU's own bundle.
			{"/usr/share/qemu/edk2-x86_64-code.fd", "/usr/share/qemu/edk2-i386-vars.fd"},
		}
		for _, p := range brewPrefixes {
			c = append(c, firmwarePair{p + "/share/qemu/edk2-x86_64-code.fd", p + "/share/qemu/edk2-i386-vars.fd"})
		}
	case "aarch64":
		c = []firmwarePair{
			// Debian and Ubuntu (qemu-efi-aarch64).
			{"/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd"},
			// Fedora (edk2-aarch64).
			{"/usr/share/edk2/aarch64/QEMU_EFI-pflash.raw", "/usr/share/edk2/aarch64/vars-template-pflash.raw"},
			{"/usr/share/qemu/edk2-aarch64-code.fd", "/usr/share/qemu/edk2-arm-vars.fd"},
		}
		for _, p := range brewPrefixes {
			c = append(c, firmwarePair{p + "/share/qemu/edk2-aarch64-code.fd", p + "/share/qemu/edk2-arm-vars.fd"})
		}
	}
	return c
}

// ErrNoFirmware means no UEFI firmware was found.
var ErrNoFirmware = errors.New("UEFI firmware not found")

// FindFirmware finds the UEFI firmware for arch ("x86_64" or "aarch64";
// empty means the host's). root prefixes every path ("" or "/" for the
// real system; tests pass a directory).
func FindFirmware(root, arch string) (*Firmware, error) {
	if arch == "" {
		arch = HostArch()
	}
	cands := firmwareCandidates(arch)
	if cands == nil {
		return nil, fmt.Errorf("%w: no known UEFI firmware for architecture %q (want x86_64 or aarch64)", ErrNoFirmware, arch)
	}
	for _, c := range cands {
		code, vars := filepath.Join(root, c.code), filepath.Join(root, c.vars)
		if isFile(code) && isFile(vars) {
			return &Firmware{Code: code, Vars: vars}, nil
		}
	}
	return nil, fmt.Errorf("%w for %s (looked in /usr/share/OVMF, /usr/share/AAVMF, /usr/share/edk2, /usr/share/qemu and Homebrew's share/qemu): %s", ErrNoFirmware, arch, firmwareHint(arch))
}

func firmwareHint(arch string) string {
	if runtime.GOOS == "darwin" {
		return "install it with: brew install qemu"
	}
	if arch == "aarch64" {
		return "install it with: apt-get install qemu-efi-aarch64 (Debian, Ubuntu) or dnf install edk2-aarch64 (Fedora)"
	}
	return "install it with: apt-get install ovmf (Debian, Ubuntu) or dnf install edk2-ovmf (Fedora)"
}

// HostArch is the host's architecture in QEMU's naming.
func HostArch() string {
	if runtime.GOARCH == "arm64" {
		return "aarch64"
	}
	return "x86_64"
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// EnsureVars gives the VM its own copy of the firmware's variable store at
// vmDir/efi-vars.fd (mode 0600), copying the template the first time; an
// existing copy is kept, since the guest's boot entries live in it. It
// returns the copy's path.
func (f *Firmware) EnsureVars(vmDir string) (string, error) {
	dst := filepath.Join(vmDir, VarsFile)
	// Lstat: QEMU writes the store, so a link here would have it write
	// through to the link's target.
	if fi, err := os.Lstat(dst); err == nil {
		if !fi.Mode().IsRegular() {
			return "", fmt.Errorf("UEFI variable store %s is not a regular file (%s): remove it (rm %s)", dst, fi.Mode().Type(), dst)
		}
		return dst, nil
	}
	src, err := os.Open(f.Vars)
	if err != nil {
		return "", fmt.Errorf("copy UEFI variable store: %w", err)
	}
	defer src.Close()
	tmp, err := os.CreateTemp(vmDir, "."+VarsFile+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("copy UEFI variable store: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return "", fmt.Errorf("copy UEFI variable store %s: %w", f.Vars, err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", fmt.Errorf("copy UEFI variable store: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("copy UEFI variable store: %w", err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", fmt.Errorf("copy UEFI variable store: %w", err)
	}
	return dst, nil
}

package disk

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mbvm/mb/internal/testenv"
)

func touch(t *testing.T, root, path, content string) {
	t.Helper()
	p := filepath.Join(root, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFindFirmware(t *testing.T) {
	tests := []struct {
		name     string
		arch     string
		files    []string
		wantCode string
		wantVars string
	}{
		{"debian 4M", "x86_64", []string{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd", "/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},
			"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"},
		{"debian old names", "x86_64", []string{"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},
			"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},
		{"code without its vars is skipped", "x86_64", []string{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},
			"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},
		{"homebrew arm mac", "aarch64", []string{"/opt/homebrew/share/qemu/edk2-aarch64-code.fd", "/opt/homebrew/share/qemu/edk2-arm-vars.fd"},
			"/opt/homebrew/share/qemu/edk2-aarch64-code.fd", "/opt/homebrew/share/qemu/edk2-arm-vars.fd"},
		{"homebrew intel mac", "x86_64", []string{"/usr/local/share/qemu/edk2-x86_64-code.fd", "/usr/local/share/qemu/edk2-i386-vars.fd"},
			"/usr/local/share/qemu/edk2-x86_64-code.fd", "/usr/local/share/qemu/edk2-i386-vars.fd"},
		{"debian arm64", "aarch64", []string{"/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd"},
			"/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range tc.files {
				touch(t, root, f, "fw")
			}
			fw, err := FindFirmware(root, tc.arch)
			if err != nil {
				t.Fatal(err)
			}
			if fw.Code != filepath.Join(root, tc.wantCode) || fw.Vars != filepath.Join(root, tc.wantVars) {
				t.Errorf("got %+v, want %s + %s", fw, tc.wantCode, tc.wantVars)
			}
		})
	}
}

func TestFindFirmwareMissingGivesHint(t *testing.T) {
	root := t.TempDir()
	// x86 firmware does not serve an aarch64 guest.
	touch(t, root, "/usr/share/OVMF/OVMF_CODE_4M.fd", "fw")
	touch(t, root, "/usr/share/OVMF/OVMF_VARS_4M.fd", "fw")
	_, err := FindFirmware(root, "aarch64")
	if !errors.Is(err, ErrNoFirmware) || !strings.Contains(err.Error(), "install") {
		t.Errorf("err = %v, want ErrNoFirmware with an install hint", err)
	}
	_, err = FindFirmware(t.TempDir(), "x86_64")
	if !errors.Is(err, ErrNoFirmware) || !(strings.Contains(err.Error(), "apt-get install ovmf") || strings.Contains(err.Error(), "brew install qemu")) {
		t.Errorf("err = %v, want a hint naming ovmf or brew", err)
	}
	if _, err := FindFirmware(root, "riscv64"); !errors.Is(err, ErrNoFirmware) {
		t.Errorf("unknown arch: err = %v", err)
	}
}

func TestFindFirmwareOnThisHost(t *testing.T) {
	fw, err := FindFirmware("", "x86_64")
	if err != nil {
		testenv.Need(t, fmt.Sprintf("UEFI firmware (apt-get install ovmf): %v", err))
	}
	for _, p := range []string{fw.Code, fw.Vars} {
		if !isFile(p) {
			t.Errorf("%s is not a file", p)
		}
	}
}

func TestEnsureVarsCopiesOnce(t *testing.T) {
	root := t.TempDir()
	touch(t, root, "/usr/share/OVMF/OVMF_CODE_4M.fd", "code")
	touch(t, root, "/usr/share/OVMF/OVMF_VARS_4M.fd", "template")
	fw, err := FindFirmware(root, "x86_64")
	if err != nil {
		t.Fatal(err)
	}
	vmDir := t.TempDir()
	p, err := fw.EnsureVars(vmDir)
	if err != nil {
		t.Fatal(err)
	}
	if p != filepath.Join(vmDir, VarsFile) {
		t.Errorf("vars at %s", p)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("vars copy: %v, %v; want mode 0600", fi, err)
	}
	// The guest writes its copy; a second EnsureVars keeps it.
	if err := os.WriteFile(p, []byte("guest boot entries"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := fw.EnsureVars(vmDir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "guest boot entries" {
		t.Errorf("EnsureVars overwrote the VM's variable store: %q", b)
	}
	if b, _ := os.ReadFile(fw.Vars); string(b) != "template" {
		t.Errorf("the template changed: %q", b)
	}
}

package qemu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/mbvm/mb/image"
	"github.com/mbvm/mb/spec"
)

// resolveBoot turns a validated spec into a bootConfig: it loads the image
// when the spec names one and gives no kernel or disk of its own, checks that
// every file exists and adds mb.hostname to the kernel command line. The
// accelerator and SSH port are filled in by the caller.
func resolveBoot(dir, mbHome string, s *spec.Spec, a arch) (*bootConfig, error) {
	if s.Memory.MiB() < 32 {
		return nil, fmt.Errorf("memory %s is too small: give at least 32M (for example 512M)", s.Memory)
	}
	if s.CPUs < 1 {
		return nil, fmt.Errorf("cpus %d: give at least 1", s.CPUs)
	}
	c := &bootConfig{
		Name:      s.Name,
		Dir:       dir,
		Arch:      a,
		CPUs:      s.CPUs,
		MemoryMiB: s.Memory.MiB(),
		Kernel:    s.Kernel,
		Initrd:    s.Initrd,
		Disk:      s.Disk,
		SSHPort:   s.SSHPort,
		Forwards:  s.Forwards,
	}
	cmdline := s.Cmdline
	extra := ""
	if s.Kernel == "" && s.Disk == "" {
		if s.Image == "" {
			return nil, errors.New("nothing to boot: the spec names no image, kernel or disk (set image: mini, or kernel/disk)")
		}
		m, err := image.Load(mbHome, s.Image)
		if err != nil {
			return nil, err
		}
		if m.Arch != "" && m.Arch != string(a) {
			return nil, fmt.Errorf("image %q is for %s, this host runs %s guests: use an image for %s", s.Image, m.Arch, a, a)
		}
		c.Kernel = m.Path(m.Kernel)
		c.Initrd = m.Path(m.Initrd)
		c.Disk = m.Path(m.Disk)
		c.DiskFormat = m.Format
		cmdline, extra = m.Cmdline, s.Cmdline
	}
	for _, f := range []struct{ what, path string }{
		{"kernel", c.Kernel}, {"initrd", c.Initrd}, {"disk", c.Disk},
	} {
		if f.path == "" {
			continue
		}
		if err := checkFile(f.path); err != nil {
			return nil, fmt.Errorf("%s file: %w", f.what, err)
		}
	}
	if c.Kernel != "" {
		c.Cmdline = kernelCmdline(cmdline, extra, s.Name)
	} else {
		fw, err := findFirmware(a)
		if err != nil {
			return nil, err
		}
		c.Firmware = fw
	}
	return c, nil
}

// checkFile says clearly when a boot file is missing or unreadable.
func checkFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s does not exist: fix the path in spec.yaml or rebuild the image (make image)", path)
	}
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", path, err)
	}
	if st.IsDir() {
		return fmt.Errorf("%s is a directory, not a file", path)
	}
	return nil
}

// findFirmware locates UEFI firmware for a disk boot.
func findFirmware(a arch) (string, error) {
	var candidates []string
	hint := "sudo apt-get install ovmf"
	switch a {
	case archX86_64:
		candidates = []string{"/usr/share/ovmf/OVMF.fd", "/usr/share/qemu/OVMF.fd", "/opt/homebrew/share/qemu/edk2-x86_64-code.fd", "/usr/local/share/qemu/edk2-x86_64-code.fd"}
	case archAArch64:
		candidates = []string{"/usr/share/qemu-efi-aarch64/QEMU_EFI.fd", "/opt/homebrew/share/qemu/edk2-aarch64-code.fd", "/usr/local/share/qemu/edk2-aarch64-code.fd"}
		hint = "sudo apt-get install qemu-efi-aarch64"
	}
	if runtime.GOOS == "darwin" {
		hint = "brew install qemu"
	}
	for _, p := range candidates {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("a disk boot needs UEFI firmware and none was found (looked in %s); install it with: %s", filepath.Dir(candidates[0]), hint)
}

// Package image holds mb's image cache: the image.yaml manifest that says
// how to boot an image, and the lookup of images under $MB_HOME/images.
package image

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"go.yaml.in/yaml/v3"

	"github.com/mbvm/mb/internal/layout"
)

// ManifestName is the manifest's file name inside an image directory.
const ManifestName = "image.yaml"

// Manifest describes an image: either a kernel (with initrd and command
// line) for direct boot, or a disk, or both (a kernel booting a root disk).
// File names are relative to the image directory.
type Manifest struct {
	Name    string `yaml:"name"`
	Arch    string `yaml:"arch,omitempty"` // x86_64 or aarch64
	Kernel  string `yaml:"kernel,omitempty"`
	Initrd  string `yaml:"initrd,omitempty"`
	Cmdline string `yaml:"cmdline,omitempty"`
	Disk    string `yaml:"disk,omitempty"`
	// Format is the disk format: qcow2 or raw.
	Format string `yaml:"format,omitempty"`
	// SHA256 is the disk's digest, hex.
	SHA256 string `yaml:"sha256,omitempty"`
	// ReadyLine is printed on the serial console once the guest is ready.
	ReadyLine string `yaml:"ready_line,omitempty"`
	// Agent is "mb-agent", "qemu-ga" or "none".
	Agent string `yaml:"agent,omitempty"`
	// Source records where the image came from (URL or file).
	Source string `yaml:"source,omitempty"`

	// Dir is the image directory; set by Load, not stored.
	Dir string `yaml:"-"`
}

// Path returns the absolute path of a file named in the manifest, or "".
func (m *Manifest) Path(file string) string {
	if file == "" {
		return ""
	}
	if filepath.IsAbs(file) {
		return file
	}
	return filepath.Join(m.Dir, file)
}

// Load reads the manifest of the named image under mbHome.
func Load(mbHome, name string) (*Manifest, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	dir := layout.ImageDir(mbHome, name)
	return LoadDir(dir)
}

// LoadDir reads dir/image.yaml.
func LoadDir(dir string) (*Manifest, error) {
	path := filepath.Join(dir, ManifestName)
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, fmt.Errorf("image %q not found: %s is missing (run `make image` for the mini image, or `mb image pull`)", filepath.Base(dir), path)
	}
	if err != nil {
		return nil, fmt.Errorf("read image manifest: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: bad image manifest: %w", path, err)
	}
	m.Dir = dir
	if m.Kernel == "" && m.Disk == "" {
		return nil, fmt.Errorf("%s: image has neither kernel nor disk", path)
	}
	for _, f := range []string{m.Kernel, m.Initrd, m.Disk} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(m.Path(f)); err != nil {
			return nil, fmt.Errorf("image %q is incomplete: %w (rebuild or re-pull it)", m.Name, err)
		}
	}
	return &m, nil
}

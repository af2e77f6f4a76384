// Package spec holds the VM specification: the one schema, stored as
// spec.yaml in each VM's directory, that both vmhost and the daemon read.
package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/mbvm/mb/internal/atomicfile"
	"go.yaml.in/yaml/v3"
)

// FileName is the name of the spec file inside a VM directory.
const FileName = "spec.yaml"

// Defaults applied by (*Spec).SetDefaults.
const (
	DefaultCPUs          = 1
	DefaultMemory        = Size(512 << 20)
	DefaultStopTimeout   = 30 * time.Second
	DefaultAgentInterval = 5 * time.Second
	DefaultImage         = "mini"
)

// Spec is a VM's desired configuration.
type Spec struct {
	// Name is the VM's name; see ValidateName.
	Name string `yaml:"name"`
	// Backend is "qemu" (the default), "applevirt" or "fake".
	Backend string `yaml:"backend,omitempty"`

	// Image names an image under $MB_HOME/images whose manifest supplies
	// the kernel, initrd, command line or disk. Explicit Kernel or Disk
	// fields take precedence over the image.
	Image string `yaml:"image,omitempty"`
	// Kernel, Initrd and Cmdline describe a direct kernel boot.
	Kernel  string `yaml:"kernel,omitempty"`
	Initrd  string `yaml:"initrd,omitempty"`
	Cmdline string `yaml:"cmdline,omitempty"`
	// Disk is a boot disk (UEFI boot when no kernel is given), or the root
	// disk of a kernel boot.
	Disk     string `yaml:"disk,omitempty"`
	DiskSize Size   `yaml:"disk_size,omitempty"`
	// DiskFormat is Disk's format, qcow2 or raw. The daemon decides it once,
	// when it creates the VM, and stores it here; every start passes it to
	// QEMU, which then never guesses (a guest could write a qcow2 header
	// into a raw disk to make QEMU open a host file).
	DiskFormat string `yaml:"disk_format,omitempty"`

	CPUs   int   `yaml:"cpus,omitempty"`
	Memory Size  `yaml:"memory,omitempty"`
	Accel  Accel `yaml:"accel,omitempty"`
	// QEMUBinary chooses the QEMU binary of this VM: an absolute path, or
	// a bare name looked up in the daemon's PATH. Empty: qemu-system-ARCH.
	QEMUBinary string `yaml:"qemu_binary,omitempty"`

	// SSHPort is the host port on 127.0.0.1 forwarded to the guest's port
	// 22; 0 picks a free port.
	SSHPort  int       `yaml:"ssh_port,omitempty"`
	Forwards []Forward `yaml:"forwards,omitempty"`
	// Shares are host directories shared with the guest; see Share.
	Shares []Share `yaml:"shares,omitempty"`

	Restart       RestartPolicy `yaml:"restart,omitempty"`
	StopTimeout   Duration      `yaml:"stop_timeout,omitempty"`
	AgentInterval Duration      `yaml:"agent_interval,omitempty"`

	// UserData is extra cloud-init user-data merged into the seed.
	UserData string `yaml:"user_data,omitempty"`
}

// Forward is a host port on 127.0.0.1 forwarded to a guest port.
type Forward struct {
	Host  int    `yaml:"host"`
	Guest int    `yaml:"guest"`
	Proto string `yaml:"proto,omitempty"` // "tcp" (default) or "udp"
}

// String renders the forward as HOST:GUEST[/udp].
func (f Forward) String() string {
	s := fmt.Sprintf("%d:%d", f.Host, f.Guest)
	if f.Proto == "udp" {
		s += "/udp"
	}
	return s
}

// ParseForward parses HOST:GUEST or HOST:GUEST/udp.
func ParseForward(s string) (Forward, error) {
	f := Forward{Proto: "tcp"}
	rest := s
	if i := strings.IndexByte(s, '/'); i >= 0 {
		f.Proto = s[i+1:]
		rest = s[:i]
	}
	if _, err := fmt.Sscanf(rest, "%d:%d", &f.Host, &f.Guest); err != nil || fmt.Sprintf("%d:%d", f.Host, f.Guest) != rest {
		return Forward{}, fmt.Errorf("bad forward %q: want HOST:GUEST, for example 8080:80", s)
	}
	if err := f.validate(); err != nil {
		return Forward{}, err
	}
	return f, nil
}

func (f Forward) validate() error {
	if f.Host < 1 || f.Host > 65535 || f.Guest < 1 || f.Guest > 65535 {
		return fmt.Errorf("bad forward %s: ports must be between 1 and 65535", f)
	}
	if f.Proto != "" && f.Proto != "tcp" && f.Proto != "udp" {
		return fmt.Errorf("bad forward %s: protocol %q, accepted: tcp, udp", f, f.Proto)
	}
	return nil
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidateName checks a VM name: lower-case letters, digits and dashes,
// starting with a letter or digit, at most 63 characters. This keeps names
// safe as directory names (no path tricks).
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("invalid VM name %q: use 1 to 63 lower-case letters, digits and dashes, starting with a letter or digit (for example %q)", name, "dev-1")
	}
	return nil
}

var imageNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// ValidateImageName checks an image name: 1 to 63 lower-case letters,
// digits, dots, dashes and underscores, starting with a letter or digit and
// without "..", so it is safe as a directory name under $MB_HOME/images.
// Package image uses it too; it lives here because image imports spec.
func ValidateImageName(name string) error {
	if !imageNameRE.MatchString(name) || strings.Contains(name, "..") {
		return fmt.Errorf("invalid image name %q: use 1 to 63 lower-case letters, digits, dots, dashes and underscores, starting with a letter or digit (for example %q)", name, "debian-12")
	}
	return nil
}

// Backends lists the accepted backend names.
var Backends = []string{"qemu", "applevirt", "fake"}

// SetDefaults fills unset fields with their defaults.
func (s *Spec) SetDefaults() {
	if s.Backend == "" {
		s.Backend = "qemu"
	}
	if s.CPUs == 0 {
		s.CPUs = DefaultCPUs
	}
	if s.Memory == 0 {
		s.Memory = DefaultMemory
	}
	if s.Accel == "" {
		s.Accel = AccelAuto
	}
	if s.Restart == "" {
		s.Restart = RestartNo
	}
	if s.StopTimeout == 0 {
		s.StopTimeout = Duration(DefaultStopTimeout)
	}
	if s.AgentInterval == 0 {
		s.AgentInterval = Duration(DefaultAgentInterval)
	}
	if s.Image == "" && s.Kernel == "" && s.Disk == "" && s.Backend != "fake" {
		s.Image = DefaultImage
	}
	for i := range s.Forwards {
		if s.Forwards[i].Proto == "" {
			s.Forwards[i].Proto = "tcp"
		}
	}
}

// Validate checks every field and returns all problems found, each naming
// the field and the accepted values.
func (s *Spec) Validate() error {
	var errs []error
	if err := ValidateName(s.Name); err != nil {
		errs = append(errs, err)
	}
	if s.Backend != "" && !contains(Backends, s.Backend) {
		errs = append(errs, fmt.Errorf("backend %q: accepted values: %s", s.Backend, strings.Join(Backends, ", ")))
	}
	if s.CPUs < 0 || s.CPUs > 256 {
		errs = append(errs, fmt.Errorf("cpus %d: must be between 1 and 256", s.CPUs))
	}
	if s.Memory != 0 && s.Memory < 32<<20 {
		errs = append(errs, fmt.Errorf("memory %s: must be at least 32M (for example 512M or 2G)", s.Memory))
	}
	if s.Image != "" {
		if err := ValidateImageName(s.Image); err != nil {
			errs = append(errs, fmt.Errorf("image: %w", err))
		}
	}
	if (s.Initrd != "" || s.Cmdline != "") && s.Kernel == "" && s.Image == "" {
		errs = append(errs, errors.New("initrd and cmdline need a kernel: set kernel (or use an image)"))
	}
	if s.DiskFormat != "" && s.DiskFormat != "qcow2" && s.DiskFormat != "raw" {
		errs = append(errs, fmt.Errorf("disk_format %q: accepted values: qcow2, raw", s.DiskFormat))
	}
	if s.DiskFormat != "" && s.Disk == "" {
		errs = append(errs, errors.New("disk_format needs a disk: set disk, or remove disk_format"))
	}
	for _, f := range s.hostFiles() {
		if strings.HasPrefix(*f.path, "json:") {
			errs = append(errs, fmt.Errorf("%s %q: json: pseudo-protocol names are refused: give the path of a file", f.field, *f.path))
		}
	}
	if s.SSHPort < 0 || s.SSHPort > 65535 {
		errs = append(errs, fmt.Errorf("ssh_port %d: must be between 0 (automatic) and 65535", s.SSHPort))
	}
	seen := map[string]bool{}
	for _, f := range s.Forwards {
		if err := f.validate(); err != nil {
			errs = append(errs, err)
		}
		key := fmt.Sprintf("%d/%s", f.Host, f.Proto)
		if seen[key] {
			errs = append(errs, fmt.Errorf("forward %s: host port %d is forwarded twice", f, f.Host))
		}
		seen[key] = true
		if f.Host == s.SSHPort && s.SSHPort != 0 && f.Proto != "udp" {
			errs = append(errs, fmt.Errorf("forward %s: host port %d is already the ssh_port", f, f.Host))
		}
	}
	errs = append(errs, s.validateShares()...)
	if err := validateQEMUBinary(s.QEMUBinary); err != nil {
		errs = append(errs, err)
	}
	if s.StopTimeout < 0 {
		errs = append(errs, fmt.Errorf("stop_timeout %s: must be positive", s.StopTimeout))
	}
	if s.AgentInterval < 0 {
		errs = append(errs, fmt.Errorf("agent_interval %s: must be positive", s.AgentInterval))
	}
	return errors.Join(errs...)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Parse decodes a spec from YAML. Unknown fields and bad values are errors
// that name the line. Parse does not apply defaults or validate.
func Parse(data []byte) (*Spec, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var s Spec
	if err := dec.Decode(&s); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("spec is empty: it needs at least a name")
		}
		return nil, fmt.Errorf("bad spec: %w", err)
	}
	return &s, nil
}

// Load reads, defaults and validates dir/spec.yaml.
func Load(dir string) (*Spec, error) {
	path := filepath.Join(dir, FileName)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read VM spec: %w", err)
	}
	s, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s.SetDefaults()
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Marshal encodes the spec as YAML.
func (s *Spec) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(s); err != nil {
		return nil, fmt.Errorf("encode spec: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode spec: %w", err)
	}
	return buf.Bytes(), nil
}

// Save writes dir/spec.yaml atomically with mode 0600.
func (s *Spec) Save(dir string) error {
	data, err := s.Marshal()
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, FileName), data, 0o600)
}

var binaryNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)

// validateQEMUBinary checks qemu_binary: empty, a bare command name, or a
// clean absolute path (CheckFiles checks that it is an executable file).
func validateQEMUBinary(b string) error {
	switch {
	case b == "", binaryNameRE.MatchString(b):
		return nil
	case filepath.IsAbs(b) && filepath.Clean(b) == b:
		return nil
	}
	return fmt.Errorf("qemu_binary %q: use an absolute path (for example /usr/bin/qemu-system-x86_64) or a bare name found in PATH (for example qemu-system-x86_64)", b)
}

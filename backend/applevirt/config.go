package applevirt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"time"

	"github.com/mbvm/mb/agent/vsockrelay"
	"github.com/mbvm/mb/vm/cloudinit"
	"github.com/mbvm/mb/vm/image"
	"github.com/mbvm/mb/vm/spec"
)

// Vsock ports the guest listens on.
const (
	// AgentVsockPort is where mb-agent serves the guest agent protocol
	// (mb-agent --vsock-port 1024).
	AgentVsockPort = 1024
	// RelayVsockPort is where mb-agent's port relay listens
	// (mb-agent --relay-vsock-port 1025); SSH and forwards go through it.
	RelayVsockPort = vsockrelay.DefaultPort
)

// Disk caching and synchronization modes. Only these are used: Lima and
// vfkit settled on them after guest file system corruption with the
// framework's automatic caching.
const (
	CachingCached = "cached"
	SyncFsync     = "fsync"
)

// Boot loaders.
const (
	BootLinux = "linux" // kernel and initrd, Apple's Linux boot loader
	BootEFI   = "efi"   // a disk with its own boot loader, through EFI
)

// Config is the VM as Apple Virtualization will run it: plain data derived
// from the spec, validated and table-tested on any OS. Only the darwin
// machine turns it into framework objects.
type Config struct {
	Name string
	Dir  string
	// Arch is the guest and host architecture, GOARCH style (arm64, amd64).
	Arch        string
	CPUs        uint
	MemoryBytes uint64 // a whole number of MiB
	Boot        Boot
	Disks       []Disk
	// MAC is the NAT network device's address; see MACFromName.
	MAC       net.HardwareAddr
	SerialLog string
	// Entropy and Balloon add a virtio entropy device and a memory
	// balloon; a vsock device is always there.
	Entropy bool
	Balloon bool
	Shares  []Share

	AgentPort     uint32
	RelayPort     uint32
	SSHPort       int
	Forwards      []spec.Forward
	AgentInterval time.Duration
}

// Boot says how the VM boots.
type Boot struct {
	Kind    string // BootLinux or BootEFI
	Kernel  string
	Initrd  string
	Cmdline string
	// VariableStore and MachineID are the per-VM EFI variable store and
	// the file keeping the generic machine identifier (EFI boot only).
	VariableStore string
	MachineID     string
}

// Disk is a raw disk image attached as a virtio block device.
type Disk struct {
	Path     string
	ReadOnly bool
	Caching  string // always CachingCached
	Sync     string // always SyncFsync
}

// Share is a host directory exposed as a virtiofs device.
type Share struct {
	Tag      string
	HostPath string
	Guest    string
	ReadOnly bool
}

// BuildOptions are the inputs of BuildConfig.
type BuildOptions struct {
	Dir  string // the VM directory
	Home string // $MB_HOME, where images live
	Spec *spec.Spec
	// Arch overrides runtime.GOARCH (tests).
	Arch string
	// Logger receives what BuildConfig does to files (slog.Default()
	// when nil).
	Logger *slog.Logger
}

func (o BuildOptions) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.Default()
	}
	return o.Logger
}

// BuildConfig derives the VM configuration from a defaulted, validated
// spec: it loads the image when the spec names one, checks that every file
// exists and suits the framework (raw disks, an uncompressed arm64 kernel),
// and for a disk boot prepares the VM's raw disk from an image's and the
// cloud-init seed. It reports every problem
// it finds, each with its fix.
func BuildConfig(ctx context.Context, o BuildOptions) (*Config, error) {
	s := o.Spec
	arch := o.Arch
	if arch == "" {
		arch = runtime.GOARCH
	}
	c := &Config{
		Name:          s.Name,
		Dir:           o.Dir,
		Arch:          arch,
		CPUs:          uint(max(s.CPUs, 1)),
		MemoryBytes:   s.Memory.MiB() << 20,
		MAC:           MACFromName(s.Name),
		SerialLog:     vmPath(o.Dir, SerialLogFile),
		Entropy:       true,
		Balloon:       true,
		AgentPort:     AgentVsockPort,
		RelayPort:     RelayVsockPort,
		SSHPort:       s.SSHPort,
		Forwards:      s.Forwards,
		AgentInterval: s.AgentInterval.D(),
	}
	var errs []error
	if c.MemoryBytes < 32<<20 {
		errs = append(errs, fmt.Errorf("memory %s is too small: give at least 32M (for example 512M)", s.Memory))
	}
	for _, f := range s.Forwards {
		if f.Proto == "udp" {
			errs = append(errs, fmt.Errorf("forward %s: the applevirt backend forwards TCP only (through vsock): remove /udp or use backend qemu", f))
		}
	}
	for i, sh := range s.Shares {
		p, err := sh.HostPath()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c.Shares = append(c.Shares, Share{Tag: s.ShareTag(i), HostPath: p, Guest: sh.Guest, ReadOnly: sh.ReadOnly})
	}
	kernel, initrd, cmdline, extra, disk := s.Kernel, s.Initrd, s.Cmdline, "", s.Disk
	var m *image.Manifest
	if s.Kernel == "" && s.Disk == "" {
		if s.Image == "" {
			return nil, errors.New("nothing to boot: the spec names no image, kernel or disk (set image: mini, or kernel/disk)")
		}
		var err error
		if m, err = image.Load(o.Home, s.Image); err != nil {
			return nil, err
		}
		if want := imageArch(arch); m.Arch != "" && m.Arch != want {
			return nil, fmt.Errorf("image %q is for %s, this Mac runs %s guests: use an image for %s", s.Image, m.Arch, want, want)
		}
		kernel, initrd = m.Path(m.Kernel), m.Path(m.Initrd)
		cmdline, extra = m.Cmdline, s.Cmdline
		if m.Disk != "" {
			d, err := prepareImageDisk(ctx, o.Dir, m, uint64(s.DiskSize), o.logger())
			if err != nil {
				return nil, err
			}
			disk = d
		}
	}
	if kernel != "" {
		c.Boot = Boot{Kind: BootLinux, Kernel: kernel, Initrd: initrd, Cmdline: linuxCmdline(cmdline, extra, s.Name)}
		if err := checkKernel(kernel, arch); err != nil {
			errs = append(errs, err)
		}
		if initrd != "" {
			if err := checkFile(initrd); err != nil {
				errs = append(errs, fmt.Errorf("initrd file: %w", err))
			}
		}
	} else {
		c.Boot = Boot{Kind: BootEFI, VariableStore: vmPath(o.Dir, EFIVarsFile), MachineID: vmPath(o.Dir, MachineIDFile)}
	}
	if disk != "" {
		if err := checkRawDisk(disk); err != nil {
			errs = append(errs, err)
		}
		c.Disks = append(c.Disks, Disk{Path: disk, Caching: CachingCached, Sync: SyncFsync})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if disk != "" {
		// A disk boots a distribution: give it its SSH keys and seed.
		seed, err := cloudinit.PrepareVM(o.Dir, s)
		if err != nil {
			return nil, err
		}
		c.Disks = append(c.Disks, Disk{Path: seed, ReadOnly: true, Caching: CachingCached, Sync: SyncFsync})
	}
	return c, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "non-raw"
	}
	return s
}

// imageArch maps GOARCH to the architecture names image manifests use.
func imageArch(goarch string) string {
	switch goarch {
	case "arm64":
		return "aarch64"
	case "amd64":
		return "x86_64"
	}
	return goarch
}

// linuxCmdline is the kernel command line: the image's or the spec's, with
// the spec's extra words, the console on hvc0 (the virtio console: Apple
// Virtualization has no UART) and mb.hostname.
func linuxCmdline(base, extra, name string) string {
	words := strings.Fields(base)
	words = append(words, strings.Fields(extra)...)
	hasConsole := false
	out := words[:0]
	for _, w := range words {
		if strings.HasPrefix(w, "console=") {
			if w != "console=hvc0" {
				continue // ttyS0 and friends do not exist here
			}
			hasConsole = true
		}
		if strings.HasPrefix(w, "mb.hostname=") {
			continue
		}
		out = append(out, w)
	}
	if !hasConsole {
		out = append(out, "console=hvc0")
	}
	return strings.Join(append(out, "mb.hostname="+name), " ")
}

// shellQuote quotes a path for a command the user copies.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+~") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

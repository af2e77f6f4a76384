package qemu

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/vm/disk"
	"github.com/mbvm/mb/vm/spec"
)

// Names of the files QEMU uses in the VM directory; internal/layout owns
// them (and lists them as this backend's files).
const (
	pidFileName     = layout.QEMUPID
	qmpSockName     = layout.QMPSocket
	consoleSockName = layout.ConsoleSocket
	serialLogName   = layout.SerialLog
	agentSockName   = layout.AgentSocket
)

// AgentPortName is the virtio-serial port name of the guest agent channel.
const AgentPortName = "org.qemu.guest_agent.0"

// bootConfig is everything the command line is built from. It is plain
// data, resolved from the spec and image beforehand, so buildArgs is a pure
// function.
type bootConfig struct {
	Name      string
	Dir       string
	Arch      arch
	Accel     spec.Accel
	CPUs      int
	MemoryMiB uint64

	Kernel  string
	Initrd  string
	Cmdline string
	// Drives are the virtio disks, in order (/dev/vda first).
	Drives []disk.Drive
	// FirmwareCode and FirmwareVars are the UEFI firmware and the VM's
	// own variable store, for a disk boot without a kernel.
	FirmwareCode string
	FirmwareVars string

	SSHPort  int
	Forwards []spec.Forward
	// Shares are the host folder shares (shares.go).
	Shares []qemuShare

	// AgentInterval is how often the guest agent is pinged (0: the
	// default).
	AgentInterval time.Duration

	// Warm is the guest memory file and the restore to run (snapshot.go).
	Warm warmConfig
}

func (c *bootConfig) path(name string) string { return filepath.Join(c.Dir, name) }

// buildArgs returns QEMU's arguments (without the binary) for c.
func buildArgs(c *bootConfig) []string {
	machine := "q35"
	if c.Arch == archAArch64 {
		machine = "virt"
	}
	args := []string{
		"-name", c.Name,
		"-machine", machine + c.Warm.machineOpt(),
		"-accel", accelArg(c.Accel),
	}
	args = append(args, c.Warm.args(c)...)
	if c.Arch == archAArch64 {
		cpu := "max"
		if c.Accel == spec.AccelHVF || c.Accel == spec.AccelKVM {
			cpu = "host"
		}
		args = append(args, "-cpu", cpu)
	} else if c.Accel == spec.AccelKVM || c.Accel == spec.AccelHVF {
		args = append(args, "-cpu", "host")
	}
	args = append(args,
		"-smp", strconv.Itoa(c.CPUs),
		"-m", strconv.FormatUint(c.MemoryMiB, 10),
		"-nodefaults", "-nographic",
		// The monitor is QMP only; the console goes to console.sock and
		// serial.log, never to QEMU's stdio.
		"-chardev", "socket,id=qmp,path="+disk.EscapeOpt(c.path(qmpSockName))+",server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
		"-chardev", "socket,id=console,path="+disk.EscapeOpt(c.path(consoleSockName))+",server=on,wait=off,logfile="+disk.EscapeOpt(c.path(serialLogName))+",logappend=on",
		"-serial", "chardev:console",
		"-pidfile", c.path(pidFileName),
		// A guest panic is a crash: QEMU emits GUEST_PANICKED and exits 1.
		"-action", "panic=exit-failure",
		"-device", pvpanicDevice(c.Arch),
		"-netdev", netdevArg(c),
		"-device", "virtio-net-pci,netdev=net0,romfile=",
		"-device", "virtio-serial-pci,id=vser0",
		"-chardev", "socket,id=agent,path="+disk.EscapeOpt(c.path(agentSockName))+",server=on,wait=off",
		"-device", "virtserialport,bus=vser0.0,chardev=agent,name="+AgentPortName,
		"-object", "rng-random,id=rng0,filename=/dev/urandom",
		"-device", "virtio-rng-pci,rng=rng0",
	)
	if c.Kernel != "" {
		args = append(args, "-kernel", c.Kernel)
		if c.Initrd != "" {
			args = append(args, "-initrd", c.Initrd)
		}
		if c.Cmdline != "" {
			args = append(args, "-append", c.Cmdline)
		}
	}
	if c.FirmwareCode != "" {
		args = append(args, disk.PflashArgs(c.FirmwareCode, c.FirmwareVars)...)
	}
	args = append(args, shareArgs(c)...)
	return append(args, disk.DriveArgs(c.Drives...)...)
}

// pvpanicDevice is the pvpanic device for the machine type: the ISA one on
// q35 (guest driver pvpanic-mmio), the PCI one on virt (pvpanic-pci).
func pvpanicDevice(a arch) string {
	if a == archAArch64 {
		return "pvpanic-pci"
	}
	return "pvpanic"
}

// netdevArg is the user-mode network with every forward bound to 127.0.0.1.
func netdevArg(c *bootConfig) string {
	var b strings.Builder
	b.WriteString("user,id=net0")
	if c.SSHPort > 0 {
		fmt.Fprintf(&b, ",hostfwd=tcp:127.0.0.1:%d-:22", c.SSHPort)
	}
	for _, f := range c.Forwards {
		proto := f.Proto
		if proto == "" {
			proto = "tcp"
		}
		fmt.Fprintf(&b, ",hostfwd=%s:127.0.0.1:%d-:%d", proto, f.Host, f.Guest)
	}
	return b.String()
}

// serialConsole is the kernel's name for the machine's first serial port,
// where QEMU's -serial goes (console.sock and serial.log).
func serialConsole(a arch) string {
	if a == archAArch64 {
		return "ttyAMA0"
	}
	return "ttyS0"
}

// kernelCmdline appends mb's own parameters to the image's command line.
// Without any command line (a direct kernel boot without one), the kernel
// gets the serial console, so that the boot shows in serial.log.
func kernelCmdline(a arch, base, extra, hostname string) string {
	if strings.TrimSpace(base) == "" && strings.TrimSpace(extra) == "" {
		base = "console=" + serialConsole(a)
	}
	parts := []string{}
	for _, p := range []string{base, extra, "mb.hostname=" + hostname} {
		if p = strings.TrimSpace(p); p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, " ")
}

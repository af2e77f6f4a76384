//go:build darwin && cgo

package applevirt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/Code-Hex/vz/v3"
)

// platformErr is nil: this build can run VMs.
var platformErr error

// vzMachine is a machine run by Apple's Virtualization framework through
// vz. This file is the only one that imports vz.
type vzMachine struct {
	vm     *vz.VirtualMachine
	states chan machineState
}

// newMachine turns the configuration into a framework VM, validated and
// ready to start.
func newMachine(cfg *Config) (machine, error) {
	vcfg, err := vzConfig(cfg)
	if err != nil {
		return nil, err
	}
	if ok, err := vcfg.Validate(); err != nil || !ok {
		return nil, fmt.Errorf("the Virtualization framework refused the VM configuration: %w", err)
	}
	vm, err := vz.NewVirtualMachine(vcfg)
	if err != nil {
		return nil, fmt.Errorf("create the VM: %w", err)
	}
	m := &vzMachine{vm: vm, states: make(chan machineState, 16)}
	go m.forwardStates()
	return m, nil
}

// forwardStates is the one goroutine that reads vz's StateChangedNotify:
// that channel is shared by every reader and never closed, so it is read
// here only, and this goroutine ends after the VM's terminal state.
func (m *vzMachine) forwardStates() {
	defer close(m.states)
	started := false
	for s := range m.vm.StateChangedNotify() {
		ms := fromVZState(s)
		if !started && ms.terminal() && ms != machineError {
			continue // the initial stopped state, before Start
		}
		started = true
		m.states <- ms
		if ms.terminal() {
			return
		}
	}
}

func fromVZState(s vz.VirtualMachineState) machineState {
	switch s {
	case vz.VirtualMachineStateStopped:
		return machineStopped
	case vz.VirtualMachineStateRunning:
		return machineRunning
	case vz.VirtualMachineStatePaused:
		return machinePaused
	case vz.VirtualMachineStateError:
		return machineError
	case vz.VirtualMachineStateStarting:
		return machineStarting
	case vz.VirtualMachineStatePausing:
		return machinePausing
	case vz.VirtualMachineStateResuming:
		return machineResuming
	case vz.VirtualMachineStateStopping:
		return machineStopping
	case vz.VirtualMachineStateSaving:
		return machineSaving
	case vz.VirtualMachineStateRestoring:
		return machineRestoring
	}
	return machineError
}

func (m *vzMachine) States() <-chan machineState { return m.states }

// Start boots the VM; the framework reports the outcome through a
// completion handler, which vz waits for.
func (m *vzMachine) Start(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- m.vm.Start() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("start: %w", ctx.Err())
	}
}

// RequestStop asks the guest to power off (a power button press).
func (m *vzMachine) RequestStop() error {
	if !m.vm.CanRequestStop() {
		return fmt.Errorf("the framework cannot deliver a stop request in state %s", m.vm.State())
	}
	ok, err := m.vm.RequestStop()
	if err != nil {
		return fmt.Errorf("stop request: %w", err)
	}
	if !ok {
		return errors.New("the framework did not deliver the stop request")
	}
	return nil
}

// Stop ends the VM at once.
func (m *vzMachine) Stop() error {
	if !m.vm.CanStop() {
		return fmt.Errorf("the framework cannot stop the VM in state %s", m.vm.State())
	}
	return m.vm.Stop()
}

// DialVsock connects to a vsock port of the guest.
func (m *vzMachine) DialVsock(ctx context.Context, port uint32) (net.Conn, error) {
	devs := m.vm.SocketDevices()
	if len(devs) == 0 {
		return nil, errors.New("the VM has no vsock device")
	}
	type result struct {
		c   *vz.VirtioSocketConnection
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := devs[0].Connect(port)
		done <- result{c, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("connect to guest vsock port %d: %w", port, r.err)
		}
		return r.c, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, fmt.Errorf("connect to guest vsock port %d: %w", port, ctx.Err())
	}
}

// vzConfig builds the framework configuration from cfg.
func vzConfig(cfg *Config) (*vz.VirtualMachineConfiguration, error) {
	boot, err := vzBootLoader(cfg.Boot)
	if err != nil {
		return nil, err
	}
	vcfg, err := vz.NewVirtualMachineConfiguration(boot, cfg.CPUs, cfg.MemoryBytes)
	if err != nil {
		return nil, fmt.Errorf("VM configuration: %w", err)
	}
	platform, err := vzPlatform(cfg.Boot.MachineID)
	if err != nil {
		return nil, err
	}
	if platform != nil {
		vcfg.SetPlatformVirtualMachineConfiguration(platform)
	}

	var disks []vz.StorageDeviceConfiguration
	for _, d := range cfg.Disks {
		att, err := vz.NewDiskImageStorageDeviceAttachmentWithCacheAndSync(d.Path, d.ReadOnly, vz.DiskImageCachingModeCached, vz.DiskImageSynchronizationModeFsync)
		if err != nil {
			return nil, fmt.Errorf("disk %s: %w", d.Path, err)
		}
		blk, err := vz.NewVirtioBlockDeviceConfiguration(att)
		if err != nil {
			return nil, fmt.Errorf("disk %s: %w", d.Path, err)
		}
		disks = append(disks, blk)
	}
	vcfg.SetStorageDevicesVirtualMachineConfiguration(disks)

	nat, err := vz.NewNATNetworkDeviceAttachment()
	if err != nil {
		return nil, fmt.Errorf("NAT network: %w", err)
	}
	nic, err := vz.NewVirtioNetworkDeviceConfiguration(nat)
	if err != nil {
		return nil, fmt.Errorf("network device: %w", err)
	}
	mac, err := vz.NewMACAddress(cfg.MAC)
	if err != nil {
		return nil, fmt.Errorf("MAC address %s: %w", cfg.MAC, err)
	}
	nic.SetMACAddress(mac)
	vcfg.SetNetworkDevicesVirtualMachineConfiguration([]*vz.VirtioNetworkDeviceConfiguration{nic})

	serial, err := vz.NewFileSerialPortAttachment(cfg.SerialLog, true)
	if err != nil {
		return nil, fmt.Errorf("console log %s: %w", cfg.SerialLog, err)
	}
	console, err := vz.NewVirtioConsoleDeviceSerialPortConfiguration(serial)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	vcfg.SetSerialPortsVirtualMachineConfiguration([]*vz.VirtioConsoleDeviceSerialPortConfiguration{console})

	sock, err := vz.NewVirtioSocketDeviceConfiguration()
	if err != nil {
		return nil, fmt.Errorf("vsock device: %w", err)
	}
	vcfg.SetSocketDevicesVirtualMachineConfiguration([]vz.SocketDeviceConfiguration{sock})

	if cfg.Entropy {
		rng, err := vz.NewVirtioEntropyDeviceConfiguration()
		if err != nil {
			return nil, fmt.Errorf("entropy device: %w", err)
		}
		vcfg.SetEntropyDevicesVirtualMachineConfiguration([]*vz.VirtioEntropyDeviceConfiguration{rng})
	}
	if cfg.Balloon {
		b, err := vz.NewVirtioTraditionalMemoryBalloonDeviceConfiguration()
		if err != nil {
			return nil, fmt.Errorf("memory balloon: %w", err)
		}
		vcfg.SetMemoryBalloonDevicesVirtualMachineConfiguration([]vz.MemoryBalloonDeviceConfiguration{b})
	}

	var shares []vz.DirectorySharingDeviceConfiguration
	for _, s := range cfg.Shares {
		dir, err := vz.NewSharedDirectory(s.HostPath, s.ReadOnly)
		if err != nil {
			return nil, fmt.Errorf("share %s: %w", s.HostPath, err)
		}
		single, err := vz.NewSingleDirectoryShare(dir)
		if err != nil {
			return nil, fmt.Errorf("share %s: %w", s.HostPath, err)
		}
		fs, err := vz.NewVirtioFileSystemDeviceConfiguration(s.Tag)
		if err != nil {
			return nil, fmt.Errorf("share %s (tag %s): %w", s.HostPath, s.Tag, err)
		}
		fs.SetDirectoryShare(single)
		shares = append(shares, fs)
	}
	if len(shares) > 0 {
		vcfg.SetDirectorySharingDevicesVirtualMachineConfiguration(shares)
	}
	return vcfg, nil
}

// vzBootLoader is the Linux boot loader for a kernel, or EFI with the VM's
// own variable store (created on first boot) for a disk.
func vzBootLoader(b Boot) (vz.BootLoader, error) {
	switch b.Kind {
	case BootLinux:
		opts := []vz.LinuxBootLoaderOption{vz.WithCommandLine(b.Cmdline)}
		if b.Initrd != "" {
			opts = append(opts, vz.WithInitrd(b.Initrd))
		}
		l, err := vz.NewLinuxBootLoader(b.Kernel, opts...)
		if err != nil {
			return nil, fmt.Errorf("Linux boot loader for %s: %w", b.Kernel, err)
		}
		return l, nil
	case BootEFI:
		var vopts []vz.NewEFIVariableStoreOption
		if _, err := os.Stat(b.VariableStore); errors.Is(err, os.ErrNotExist) {
			vopts = append(vopts, vz.WithCreatingEFIVariableStore())
		}
		store, err := vz.NewEFIVariableStore(b.VariableStore, vopts...)
		if err != nil {
			return nil, fmt.Errorf("EFI variable store %s: %w", b.VariableStore, err)
		}
		l, err := vz.NewEFIBootLoader(vz.WithEFIVariableStore(store))
		if err != nil {
			return nil, fmt.Errorf("EFI boot loader: %w", err)
		}
		return l, nil
	}
	return nil, fmt.Errorf("unknown boot kind %q", b.Kind)
}

// vzPlatform is the generic platform with the VM's machine identifier,
// created once and kept in path so the guest sees the same machine at
// every boot. Without a path (a kernel boot) it is nil: the framework's
// default.
func vzPlatform(path string) (vz.PlatformConfiguration, error) {
	if path == "" {
		return nil, nil
	}
	var id *vz.GenericMachineIdentifier
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if id, err = vz.NewGenericMachineIdentifierWithData(data); err != nil {
			return nil, fmt.Errorf("machine identifier %s is damaged (delete it to make a new one; the guest then sees a new machine): %w", path, err)
		}
	case errors.Is(err, os.ErrNotExist):
		if id, err = vz.NewGenericMachineIdentifier(); err != nil {
			return nil, fmt.Errorf("new machine identifier: %w", err)
		}
		if err := os.WriteFile(path, id.DataRepresentation(), 0o600); err != nil {
			return nil, fmt.Errorf("save the machine identifier: %w", err)
		}
	default:
		return nil, fmt.Errorf("read the machine identifier: %w", err)
	}
	p, err := vz.NewGenericPlatformConfiguration(vz.WithGenericMachineIdentifier(id))
	if err != nil {
		return nil, fmt.Errorf("platform configuration: %w", err)
	}
	return p, nil
}

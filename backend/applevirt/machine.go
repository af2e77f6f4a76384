package applevirt

import (
	"context"
	"net"
)

// machineState is a VM state as the framework reports it.
type machineState int

// The framework's states (VZVirtualMachineState).
const (
	machineStopped machineState = iota
	machineRunning
	machinePaused
	machineError
	machineStarting
	machinePausing
	machineResuming
	machineStopping
	machineSaving
	machineRestoring
)

func (s machineState) String() string {
	switch s {
	case machineStopped:
		return "stopped"
	case machineRunning:
		return "running"
	case machinePaused:
		return "paused"
	case machineError:
		return "error"
	case machineStarting:
		return "starting"
	case machinePausing:
		return "pausing"
	case machineResuming:
		return "resuming"
	case machineStopping:
		return "stopping"
	case machineSaving:
		return "saving"
	case machineRestoring:
		return "restoring"
	}
	return "unknown"
}

// terminal reports whether the VM is gone for good in this state: a VM mb
// started is never started again, so stopped and error end it.
func (s machineState) terminal() bool { return s == machineStopped || s == machineError }

// machine is the part of a framework VM the controller drives. The darwin
// build implements it with vz; tests implement it with a fake. Methods other
// than Start may be called from any goroutine.
type machine interface {
	// Start boots the VM; it returns once the framework has started it
	// (or failed to).
	Start(ctx context.Context) error
	// RequestStop asks the guest to power off, as an ACPI power button
	// press would; it returns once the request is delivered.
	RequestStop() error
	// Stop ends the VM at once, as pulling the power cord would.
	Stop() error
	// States delivers every state change. It is read by exactly one
	// goroutine (the controller's watch); it is closed after a terminal
	// state.
	States() <-chan machineState
	// DialVsock connects to a vsock port of the guest.
	DialVsock(ctx context.Context, port uint32) (net.Conn, error)
}

// newMachineFunc builds a machine from a configuration; newMachine (per OS)
// is the real one, tests substitute a fake.
type newMachineFunc func(cfg *Config) (machine, error)

package guestinit

import "fmt"

// Action is what a shutdown ends with.
type Action int

// The shutdown actions, each with its reboot(2) command.
const (
	PowerOff Action = iota
	Reboot
	Halt
)

// String returns the action as the console line names it.
func (a Action) String() string {
	switch a {
	case Reboot:
		return "reboot"
	case Halt:
		return "halt"
	default:
		return "power off"
	}
}

// ShutdownLine is the console line printed when a clean shutdown begins.
func ShutdownLine(a Action, reason string) string {
	return fmt.Sprintf("mb-agent: %s (reason: %s)", a, reason)
}

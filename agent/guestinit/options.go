package guestinit

import "log/slog"

// ReadyLine is printed on the console, once, when init is done and the
// agent child is started. Hosts wait for it in serial.log.
const ReadyLine = "mb-agent: ready"

// EnvPID1 is set to "1" in the agent child's environment, so the agent
// knows that PID 1 is guestinit and asks it to shut down with signals.
const EnvPID1 = "MB_AGENT_PID1"

// AgentRoleFlag is the flag the agent child is started with.
const AgentRoleFlag = "--role=agent"

// DefaultHostname is the hostname when the command line has no mb.hostname=.
const DefaultHostname = "mb"

// searchPath is PATH for every process PID 1 starts.
const searchPath = "/sbin:/bin:/usr/sbin:/usr/bin"

// Options configures the init role. The zero value is the mini image's
// layout.
type Options struct {
	// Busybox is the busybox binary; default /bin/busybox.
	Busybox string
	// DHCPScript is udhcpc's script; default /etc/udhcpc.script.
	DHCPScript string
	// ModuleOrder lists the modules to load; default /etc/modules.order.
	ModuleOrder string
	// AgentArgs are extra arguments for the agent child.
	AgentArgs []string
	// Logger receives init's log; default: info and worse as text on
	// the console.
	Logger *slog.Logger
}

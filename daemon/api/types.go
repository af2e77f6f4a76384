// Package api holds the mb daemon's HTTP/JSON API: the types exchanged over
// $MB_HOME/mb.sock under /v1/, and the Client the mb command line uses.
//
// Every field is snake_case in JSON. Errors are answered as
// {"error": "...", "code": "..."} with a status that says what kind of
// error it is (400 for a bad spec or name, 404 for an unknown VM, 409 for
// a state conflict, 413 for a body too large, 502 when the guest or vmhost
// failed, 503 when the daemon is at its connection limit, 500 for anything
// else) and a code (the Code* constants) that programs switch on.
package api

import (
	"fmt"
	"strings"
	"time"

	"github.com/mbvm/mb/vmhost"
)

// The VM states the daemon reports.
const (
	StateStopped  = "stopped"
	StateStarting = "starting"
	StateRunning  = "running"
	StateStopping = "stopping"
	StateCrashed  = "crashed"
)

// VM is one VM as the daemon sees it: its spec summary, its state and, when
// it runs, what its vmhost reports.
type VM struct {
	Name    string `json:"name"`
	State   string `json:"state"`
	Reason  string `json:"reason,omitempty"`
	Backend string `json:"backend,omitempty"`
	Image   string `json:"image,omitempty"`
	CPUs    int    `json:"cpus,omitempty"`
	// Memory is the guest memory, "512M" style; MemoryBytes the same in bytes.
	Memory      string `json:"memory,omitempty"`
	MemoryBytes uint64 `json:"memory_bytes,omitempty"`
	SSHPort     int    `json:"ssh_port,omitempty"`
	Restart     string `json:"restart,omitempty"`
	// ExitCode is the vmhost exit code of the last run, when it ended.
	ExitCode *int `json:"exit_code,omitempty"`
	// StoppedBy is how the last run was brought down (agent, acpi, ...).
	StoppedBy string `json:"stopped_by,omitempty"`
	// Restarts counts the restarts the daemon made under the restart policy.
	Restarts int `json:"restarts"`
	// UserStopped is true when the user stopped the VM: it is not restarted.
	UserStopped bool `json:"user_stopped,omitempty"`
	// Ready is true once the guest is ready: its agent answers or, for an
	// image without an agent, its ready line appeared on the console.
	Ready     bool       `json:"ready"`
	PID       int        `json:"pid,omitempty"`
	StartedAt *time.Time `json:"started_at,omitempty"`
	// UptimeSeconds is how long the current run has lasted.
	UptimeSeconds float64           `json:"uptime_seconds,omitempty"`
	IPs           []string          `json:"ips,omitempty"`
	Agent         *vmhost.AgentInfo `json:"agent,omitempty"`
	Dir           string            `json:"dir,omitempty"`
	// Alerts summarises the monitor's active alerts about the VM.
	Alerts AlertSummary `json:"alerts"`

	// Spec is the full spec (inspect only), with the spec.yaml field names.
	Spec map[string]any `json:"spec,omitempty"`
	// Details is what vmhost's info method says (inspect only).
	Details map[string]any `json:"details,omitempty"`
	// Paths are the running VM's sockets and logs as vmhost reports them
	// (inspect only), keyed by the layout.Path* names (console, vmhost socket, ...).
	Paths map[string]string `json:"paths,omitempty"`
}

// AgentState is the agent column: "ok", "unresponsive", "none" or "".
func (v *VM) AgentState() string {
	if v.Agent == nil {
		return ""
	}
	return v.Agent.State
}

// AlertSummary is the monitor's view of a VM in the VM listing: how many
// of its alerts are active (not OK; reachability included) and the worst
// of their levels.
type AlertSummary struct {
	Active int `json:"active"`
	// Worst is "WARNING", "UNKNOWN" or "CRITICAL"; empty when none is
	// active.
	Worst string `json:"worst,omitempty"`
}

// String is the ALERTS column of mb ls: "-" for none, else the count and
// the worst level ("1 CRIT", "2 WARN", "1 UNKN").
func (a AlertSummary) String() string {
	if a.Active == 0 {
		return "-"
	}
	short := a.Worst
	if len(short) > 4 {
		short = short[:4]
	}
	return fmt.Sprintf("%d %s", a.Active, short)
}

// Error is the body of every error reply.
type Error struct {
	Error string `json:"error"`
	// Code says, for programs, what kind of error it is (one of the Code*
	// constants); clients switch on it, never on Error's text.
	Code string `json:"code,omitempty"`
}

// Error codes of the daemon's API, in Error.Code.
const (
	CodeBadRequest   = "bad_request"   // malformed body or bad value
	CodeTooLarge     = "too_large"     // body over the size limit
	CodeNotFound     = "not_found"     // no such VM or image
	CodeExists       = "exists"        // already exists with other settings
	CodeNotRunning   = "not_running"   // the VM must be running for this
	CodeRunning      = "running"       // the VM must be stopped for this
	CodeNoAgent      = "no_agent"      // the guest has no agent for this
	CodeInUse        = "in_use"        // an image is used by VMs
	CodeGuestFailed  = "guest_failed"  // the guest or vmhost failed the request
	CodeExecStart    = "exec_start"    // the guest could not start the program
	CodeVMHostFailed = "vmhost_failed" // vmhost could not be reached or failed
	CodeBusy         = "busy"          // another operation on the VM holds it, or the daemon is at its connection limit
	CodeConflict     = "conflict"      // another state conflict
	CodeStrayDir     = "stray_dir"     // a VM directory exists that holds no VM the daemon knows
	CodeInternal     = "internal"      // anything else
)

// StartRequest is the body of POST /v1/vms/{name}/start.
type StartRequest struct {
	// TimeoutSeconds bounds the wait for vmhost to report running.
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`
	// Wait says what the client will wait for after the start: "agent"
	// (the default) or "app" / "app:NAME", an mb.ready (any, or the one
	// named NAME) from a program in the guest. While a client waits for
	// an app, the daemon has the guest agent pinged every 250 ms, so the
	// readiness shows at once; the wait lasts at most the start timeout
	// (2 minutes by default).
	Wait string `json:"wait,omitempty"`
	// Cold boots a suspended VM afresh, discarding its saved state.
	Cold bool `json:"cold,omitempty"`
	// From restores the VM from its snapshot of that name (memory and
	// disk together).
	From string `json:"from,omitempty"`
}

// ParseWait checks a StartRequest.Wait value and returns the readiness
// name it waits for: "" for the agent, "*" for any app readiness.
func ParseWait(w string) (string, error) {
	switch {
	case w == "" || w == "agent":
		return "", nil
	case w == "app":
		return "*", nil
	case strings.HasPrefix(w, "app:") && len(w) > len("app:"):
		return strings.TrimPrefix(w, "app:"), nil
	}
	return "", fmt.Errorf("wait %q: use agent, app (any mb.ready from the guest) or app:NAME (the mb.ready named NAME)", w)
}

// AppReady reports whether the guest reported the readiness name ("*":
// any) through mb-agent (mb.ready).
func (v *VM) AppReady(name string) bool {
	if v.Agent == nil {
		return false
	}
	for _, r := range v.Agent.Ready {
		if name == "*" || r == name {
			return true
		}
	}
	return false
}

// StopRequest is the body of POST /v1/vms/{name}/stop.
type StopRequest struct {
	// TimeoutSeconds is the graceful stop timeout; 0 uses the spec's.
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`
	// Force stops at once (like kill).
	Force bool `json:"force,omitempty"`
}

// ExecRequest is the body of POST /v1/vms/{name}/exec.
type ExecRequest struct {
	Argv  []string `json:"argv"`
	Env   []string `json:"env,omitempty"`
	Stdin []byte   `json:"stdin,omitempty"`
	// TimeoutSeconds, when positive, kills the command after this long;
	// 0 means no limit. The command is killed too when the client goes
	// away (mb-agent; stock qemu-ga cannot kill it).
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`
}

// ExecResult is the reply of POST /v1/vms/{name}/exec. Output is bytes
// (base64 in JSON) so binary output survives.
type ExecResult struct {
	ExitCode     int    `json:"exit_code"`
	Stdout       []byte `json:"stdout,omitempty"`
	Stderr       []byte `json:"stderr,omitempty"`
	OutTruncated bool   `json:"out_truncated,omitempty"`
	ErrTruncated bool   `json:"err_truncated,omitempty"`
	// TimedOut: the command outlived its timeout and was killed (or, with
	// stock qemu-ga, abandoned); ExitCode is what it died with, or 124.
	TimedOut bool `json:"timed_out,omitempty"`
	// ExecError explains a command that timed out or that the guest could
	// not start (ExitCode 127: no such program; 126: not executable).
	ExecError string `json:"exec_error,omitempty"`
	// Code is CodeExecStart when the guest could not start the program.
	Code string `json:"code,omitempty"`
}

// Event is one lifecycle event, as streamed by GET /v1/events (one JSON
// object per line).
type Event struct {
	Seq      int64     `json:"seq"`
	Time     time.Time `json:"time"`
	VM       string    `json:"vm,omitempty"`
	Type     string    `json:"type"`
	State    string    `json:"state,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	ExitCode *int      `json:"exit_code,omitempty"`
	Restarts int       `json:"restarts,omitempty"`
	// Level of a guest-event (debug, info, notice, warning, error,
	// critical); its text is in Reason.
	Level string `json:"level,omitempty"`
}

// Event types.
const (
	EventCreated    = "created"
	EventStarting   = "starting"
	EventRunning    = "running"
	EventStopping   = "stopping"
	EventStopped    = "stopped"
	EventCrashed    = "crashed"
	EventRestarting = "restarting"
	EventGaveUp     = "restart-limit"
	EventAdopted    = "adopted"
	EventDeleted    = "deleted"
	// EventGuest is a message a program in the guest sent with mb.event
	// on mb-agent's command socket (Level, and the text in Reason).
	EventGuest = "guest-event"
	// EventGuestReady is an mb.ready from the guest (the name, and the
	// detail when given, in Reason).
	EventGuestReady = "guest-ready"
)

// DaemonStatus is the reply of GET /v1/daemon.
type DaemonStatus struct {
	PID       int       `json:"pid"`
	Version   string    `json:"version"`
	Home      string    `json:"home"`
	Socket    string    `json:"socket"`
	StartedAt time.Time `json:"started_at"`
	VMs       int       `json:"vms"`
	Running   int       `json:"running"`
	// Env is the daemon's environment (NAME=value, sorted): the variables
	// it keeps from the command that started it, passed to every vmhost.
	Env []string `json:"env,omitempty"`
	// QEMU is the QEMU binary the daemon's PATH finds, or empty.
	QEMU string `json:"qemu,omitempty"`
}

// DaemonStopRequest is the body of POST /v1/daemon/stop.
type DaemonStopRequest struct {
	// StopVMs stops every running VM before the daemon exits.
	StopVMs bool `json:"stop_vms,omitempty"`
}

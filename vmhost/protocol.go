// Package vmhost holds the control protocol of the per-VM supervisor: the
// request and response types spoken as JSON lines over vmhost.sock, the
// Client that speaks it, the Server that answers it, and the VMController
// interface that a hypervisor backend implements.
//
// Wire format: one JSON object per line. A client writes a Request and reads
// one Response, and may send any number of requests on one connection; they
// are answered in order. A request line is limited to MaxRequestSize bytes.
// Anyone can script it:
//
//	echo '{"method":"status"}' | socat - UNIX-CONNECT:vmhost.sock
package vmhost

import (
	"encoding/json"
	"time"
)

// Method names an operation of the control protocol.
type Method string

// The methods every vmhost serves.
const (
	MethodStatus    Method = "status"
	MethodStop      Method = "stop"
	MethodForceStop Method = "force_stop"
	MethodInfo      Method = "info"
)

// Methods served only when the controller implements the matching optional
// interface (Executor, MetricsReporter).
const (
	MethodExec    Method = "exec"
	MethodMetrics Method = "metrics"
	// MethodMessages returns the messages guest programs sent through
	// mb-agent's command socket (GuestMessenger).
	MethodMessages Method = "messages"
	// MethodExecStream runs a command with its output streamed; the
	// connection then carries StreamFrame lines (StreamExecutor).
	MethodExecStream Method = "exec_stream"
)

// Stop modes accepted in Request.Mode for MethodStop. ModeAuto runs every
// phase the backend has, in order, inside one timeout; the others run a
// single phase. Which single phases exist depends on the backend: QEMU has
// agent, acpi, quit and kill; the fake backend has graceful and kill.
const (
	ModeAuto     = "auto"
	ModeAgent    = "agent"
	ModeACPI     = "acpi"
	ModeQuit     = "quit"
	ModeKill     = "kill"
	ModeGraceful = "graceful"
)

// Limits of the protocol.
const (
	// MaxRequestSize is the longest request line a server accepts,
	// newline included. A longer line is refused and the connection closed.
	MaxRequestSize = 1 << 20
	// MaxReplySize is the longest reply line a Client accepts. Replies can be
	// much larger than requests (exec output is base64 in JSON), so the cap is
	// generous: two 16 MiB output streams fit after base64 encoding.
	MaxReplySize = 64 << 20
	// DefaultStopTimeout is used for a stop request without timeout_seconds.
	DefaultStopTimeout = 30 * time.Second
	// ForceStopTimeout bounds a force_stop on the server.
	ForceStopTimeout = 20 * time.Second
)

// StopBudget is how long after a stop with timeout arrives its reply is
// due, the last phase (a kill) included: the timeout less one second, or
// 80 % of it below 5 s. A client whose own deadline is the timeout (as
// masterblaster's is) thus always gets the answer.
func StopBudget(timeout time.Duration) time.Duration {
	if timeout < 5*time.Second {
		return timeout * 4 / 5
	}
	return timeout - time.Second
}

// Request is one line sent to vmhost.sock.
type Request struct {
	Method         Method `json:"method"`
	TimeoutSeconds int    `json:"timeout_seconds,omitempty"`

	// Mode picks the stop phase for MethodStop (ModeAuto when empty).
	Mode string `json:"mode,omitempty"`

	// Exec arguments (MethodExec).
	Argv  []string `json:"argv,omitempty"`
	Env   []string `json:"env,omitempty"`
	Stdin []byte   `json:"stdin,omitempty"`
	// StdinFollows, when positive, says that this many more bytes of
	// stdin follow the request line, in StdinChunk lines (stdin over what
	// one line can carry; see MaxExecStdin).
	StdinFollows int64 `json:"stdin_follows,omitempty"`
	// TTY, Rows and Cols: MethodExecStream on a pseudo-terminal.
	TTY  bool   `json:"tty,omitempty"`
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`

	// Name is the snapshot of MethodSnapshot.
	Name string `json:"name,omitempty"`

	// After asks MethodMessages for the messages numbered after it.
	After uint64 `json:"after,omitempty"`
	// AgentPoll, on status, asks vmhost to ping the guest agent (and
	// collect its messages) now and often for a few seconds: for a client
	// waiting for the guest to report readiness.
	AgentPoll bool `json:"agent_poll,omitempty"`
}

// Response is one line answered by vmhost.sock. OK is false exactly when
// Error is set. Fields a method does not fill are omitted.
type Response struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Code says, for programs, what kind of error Error is (one of the
	// Code* constants); a client switches on it, never on Error's text.
	Code    string `json:"code,omitempty"`
	State   string `json:"state,omitempty"`
	SSHPort int    `json:"ssh_port,omitempty"`
	Backend string `json:"backend,omitempty"`

	// StoppedBy names the phase that brought the VM down (stop, force_stop).
	StoppedBy string `json:"stopped_by,omitempty"`

	// Info fields.
	Name          string         `json:"name,omitempty"`
	PID           int            `json:"pid,omitempty"`
	StartedAt     *time.Time     `json:"started_at,omitempty"`
	UptimeSeconds float64        `json:"uptime_seconds,omitempty"`
	Details       map[string]any `json:"details,omitempty"`
	// Paths are the VM's sockets and logs, keyed by the layout.Path* names
	// (vmhost_socket, console, serial_log, agent, qmp), so that clients
	// never guess a backend's file names.
	Paths map[string]string `json:"paths,omitempty"`

	// Agent is the guest agent's liveness and what it reported, when the
	// controller has an agent channel (status and info).
	Agent *AgentInfo `json:"agent,omitempty"`

	// Exec results. Output is bytes, base64 in JSON, so binary output
	// survives.
	ExitCode     *int   `json:"exit_code,omitempty"`
	Stdout       []byte `json:"stdout,omitempty"`
	Stderr       []byte `json:"stderr,omitempty"`
	OutTruncated bool   `json:"out_truncated,omitempty"`
	ErrTruncated bool   `json:"err_truncated,omitempty"`
	// TimedOut says the command outlived its timeout: it was killed with
	// its process group (mb-agent), or abandoned (stock qemu-ga); ExitCode
	// is then what it died with, or 124 when unknown.
	TimedOut bool `json:"timed_out,omitempty"`
	// ExecError explains, for a person, a command that timed out or that
	// the guest could not start at all (ExitCode 127 when the program was
	// not found, 126 otherwise, as a shell reports them).
	ExecError string `json:"exec_error,omitempty"`

	// Metrics is the guest's metrics document (MethodMetrics).
	Metrics json.RawMessage `json:"metrics,omitempty"`

	// Messages from guest programs after Request.After (MethodMessages),
	// and the number of the last one collected.
	Messages    []GuestMessage `json:"messages,omitempty"`
	MessagesSeq uint64         `json:"messages_seq,omitempty"`
}

// GuestMessage is a message a program in the guest sent to mb-agent's
// command socket, as collected by the host: Kind "event" (Level, Text),
// "metric" (Plugin, Fields) or "ready" (Name, Detail). The host cleans
// and caps it (control characters removed, text at most 4 KiB, 256
// fields) before it leaves vmhost.
type GuestMessage struct {
	Seq    uint64             `json:"seq"`
	Time   time.Time          `json:"time"`
	Kind   string             `json:"kind"`
	Level  string             `json:"level,omitempty"`
	Text   string             `json:"text,omitempty"`
	Plugin string             `json:"plugin,omitempty"`
	Fields map[string]float64 `json:"fields,omitempty"`
	Name   string             `json:"name,omitempty"`
	Detail string             `json:"detail,omitempty"`
}

// Error codes carried in Response.Code next to Error. Error stays prose for
// people; Code is what another process acts on. New codes may be added; a
// client treats an unknown code like an empty one.
const (
	// CodeBadRequest: the request was malformed or had a bad value.
	CodeBadRequest = "bad_request"
	// CodeUnknownMethod: the method does not exist.
	CodeUnknownMethod = "unknown_method"
	// CodeNotAvailable: the backend or the guest cannot do this at all (no
	// guest agent, a stop mode the backend lacks, a method not implemented).
	CodeNotAvailable = "not_available"
	// CodeTimeout: the operation did not finish within its timeout.
	CodeTimeout = "timeout"
	// CodeExecStart: the guest could not start the program (exec).
	CodeExecStart = "exec_start"
	// CodeTooLarge: the request was over a size limit.
	CodeTooLarge = "too_large"
	// CodeBusy: the server refused the request because of load.
	CodeBusy = "busy"
	// CodeForbidden: the peer may not use this socket (another user).
	CodeForbidden = "forbidden"
	// CodeFailed: the operation was tried and failed (any other error).
	CodeFailed = "failed"
)

// AgentInfo describes the guest agent as vmhost sees it.
type AgentInfo struct {
	// State is "ok", "unresponsive" or "none".
	State    string     `json:"state"`
	LastSeen *time.Time `json:"last_seen,omitempty"`
	// RTTMs is the last ping round trip; RTTAvgMs a smoothed average.
	RTTMs    float64  `json:"rtt_ms,omitempty"`
	RTTAvgMs float64  `json:"rtt_avg_ms,omitempty"`
	Hostname string   `json:"hostname,omitempty"`
	OS       string   `json:"os,omitempty"`
	IPs      []string `json:"ips,omitempty"`
	// Kind is "mb-agent" or "qemu-ga" when known.
	Kind string `json:"kind,omitempty"`
	// Ready lists the readiness names guest programs reported with
	// mb.ready ("default" for an unnamed one).
	Ready []string `json:"ready,omitempty"`
	// MessagesSeq numbers the last message collected from guest programs
	// (fetch them with MethodMessages); MessagesDropped counts the ones
	// lost to the guest's full queue or the host's rate limit.
	MessagesSeq     uint64 `json:"messages_seq,omitempty"`
	MessagesDropped uint64 `json:"messages_dropped,omitempty"`
}

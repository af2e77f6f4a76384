// Package qgaproto holds the wire types of the QEMU guest agent protocol
// (QGA) as mb speaks it: the requests and replies of the standard commands
// mb uses, mb's extensions (commands and arguments whose names start with
// "mb-"), the mb-get-metrics document and the parsers of the /proc files it
// is built from. It has no client or server code: the host's client
// (agent/qga) and the guest's server (agent, run by mb-agent) both import
// it, so the two sides cannot drift apart.
package qgaproto

import (
	"encoding/json"
	"fmt"
)

// Request is one QGA command.
type Request struct {
	Execute   string `json:"execute"`
	Arguments any    `json:"arguments,omitempty"`
}

// Reply is one QGA reply: exactly one of Return and Error is set.
type Reply struct {
	Return json.RawMessage `json:"return,omitempty"`
	Error  *Error          `json:"error,omitempty"`
}

// QGA error classes.
const (
	ClassGenericError    = "GenericError"
	ClassCommandNotFound = "CommandNotFound"
)

// Error is an error reply from the agent.
type Error struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
	// Reason is mb's extension: why guest-exec could not start the
	// command (ReasonNotFound, ReasonNotExecutable), for the host to act
	// on without reading Desc. Stock qemu-ga never sets it.
	Reason string `json:"mb-reason,omitempty"`
}

// Reasons of a refused guest-exec, in Error.Reason.
const (
	// ReasonNotFound: there is no such program (ENOENT, or not in PATH).
	ReasonNotFound = "not_found"
	// ReasonNotExecutable: the program exists but cannot be executed
	// (EACCES, ENOEXEC, a directory...).
	ReasonNotExecutable = "not_executable"
)

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("guest agent: %s: %s", e.Class, e.Desc)
}

// MetricsCommand is mb's extension returning a Metrics document. An agent
// whose guest-info lists it is an mb-agent, and accepts the other mb-
// extensions too (the "mb-" arguments of guest-exec, ExecKillCommand,
// ExecInputCommand).
const MetricsCommand = "mb-get-metrics"

// ExecKillCommand is mb's extension that kills the process group of a
// command started with guest-exec (SIGKILL) and forgets it: its status is
// never collected. The reply is empty. Stock qemu-ga has no way to kill a
// command it started.
const ExecKillCommand = "mb-exec-kill"

// ExecKillArgs are the arguments of ExecKillCommand.
type ExecKillArgs struct {
	PID int `json:"pid"`
}

// ExecInputCommand is mb's extension that writes the next chunk of stdin
// to a command started with guest-exec and "mb-stdin-stream": true. A
// chunk with EOF set closes the command's stdin after its data. The reply
// is empty; it comes once the chunk is handed to the command's pipe, so a
// slow reader holds the host back instead of filling the guest's memory.
const ExecInputCommand = "mb-exec-input"

// ExecInputArgs are the arguments of ExecInputCommand.
type ExecInputArgs struct {
	PID  int    `json:"pid"`
	Data []byte `json:"data,omitempty"`
	EOF  bool   `json:"eof,omitempty"`
}

// MaxInputChunk is the most stdin the host sends in one ExecInputCommand
// (or in input-data): its base64 form keeps the request well under the
// agent's 1 MiB request limit.
const MaxInputChunk = 512 << 10

// SyncArgs are the arguments of guest-sync and guest-sync-delimited.
type SyncArgs struct {
	ID int64 `json:"id"`
}

// Info is the reply of guest-info.
type Info struct {
	Version           string        `json:"version"`
	SupportedCommands []CommandInfo `json:"supported_commands"`
}

// Supports reports whether the agent lists the command as enabled.
func (i *Info) Supports(name string) bool {
	for _, c := range i.SupportedCommands {
		if c.Name == name {
			return c.Enabled
		}
	}
	return false
}

// IsMBAgent reports whether the agent is an mb-agent, which accepts mb's
// extensions, rather than a stock qemu-ga.
func (i *Info) IsMBAgent() bool {
	return i.Supports(MetricsCommand)
}

// CommandInfo describes one command in guest-info.
type CommandInfo struct {
	Name            string `json:"name"`
	Enabled         bool   `json:"enabled"`
	SuccessResponse bool   `json:"success-response"`
}

// HostName is the reply of guest-get-host-name.
type HostName struct {
	HostName string `json:"host-name"`
}

// OSInfo is the reply of guest-get-osinfo.
type OSInfo struct {
	KernelRelease string `json:"kernel-release,omitempty"`
	KernelVersion string `json:"kernel-version,omitempty"`
	Machine       string `json:"machine,omitempty"`
	ID            string `json:"id,omitempty"`
	Name          string `json:"name,omitempty"`
	PrettyName    string `json:"pretty-name,omitempty"`
	Version       string `json:"version,omitempty"`
	VersionID     string `json:"version-id,omitempty"`
	Variant       string `json:"variant,omitempty"`
	VariantID     string `json:"variant-id,omitempty"`
}

// Interface is one element of the reply of guest-network-get-interfaces.
type Interface struct {
	Name            string          `json:"name"`
	HardwareAddress string          `json:"hardware-address,omitempty"`
	IPAddresses     []IPAddress     `json:"ip-addresses,omitempty"`
	Statistics      *InterfaceStats `json:"statistics,omitempty"`
}

// IPAddress is an address of an Interface.
type IPAddress struct {
	// Type is "ipv4" or "ipv6".
	Type    string `json:"ip-address-type"`
	Address string `json:"ip-address"`
	Prefix  int    `json:"prefix"`
}

// InterfaceStats are an Interface's counters.
type InterfaceStats struct {
	RxBytes   uint64 `json:"rx-bytes"`
	RxPackets uint64 `json:"rx-packets"`
	RxErrs    uint64 `json:"rx-errs"`
	RxDropped uint64 `json:"rx-dropped"`
	TxBytes   uint64 `json:"tx-bytes"`
	TxPackets uint64 `json:"tx-packets"`
	TxErrs    uint64 `json:"tx-errs"`
	TxDropped uint64 `json:"tx-dropped"`
}

// ShutdownArgs are the arguments of guest-shutdown.
type ShutdownArgs struct {
	// Mode is "powerdown" (the default), "reboot" or "halt".
	Mode string `json:"mode,omitempty"`
}

// ExecArgs are the arguments of guest-exec.
type ExecArgs struct {
	Path          string      `json:"path"`
	Arg           []string    `json:"arg,omitempty"`
	Env           []string    `json:"env,omitempty"`
	InputData     []byte      `json:"input-data,omitempty"`
	CaptureOutput CaptureMode `json:"capture-output,omitempty"`
	// TimeoutMs is mb's extension: the agent kills the command's process
	// group after this long. Send it (and the other mb- arguments) only to
	// an mb-agent: qemu-ga refuses unknown arguments.
	TimeoutMs int64 `json:"mb-timeout-ms,omitempty"`
	// StdinStream is mb's extension: the command's stdin stays open after
	// InputData, and more comes with ExecInputCommand until a chunk with
	// EOF set.
	StdinStream bool `json:"mb-stdin-stream,omitempty"`
	// Stream is mb's extension: output is not captured for
	// guest-exec-status but kept in a small buffer the host drains with
	// ExecReadCommand as it is produced (see stream.go).
	Stream bool `json:"mb-stream,omitempty"`
	// Pty is mb's extension (with Stream): the command runs on a new
	// pseudo-terminal of this size, as its session leader; stdout and
	// stderr are the terminal's output, read as out-data.
	Pty *WinSize `json:"mb-pty,omitempty"`
}

// CaptureMode is guest-exec's capture-output: which output the agent
// keeps for guest-exec-status. qemu-ga before 8.1 takes only a bool (true
// is CaptureSeparated); later ones and mb-agent take the names too.
type CaptureMode string

// Capture modes.
const (
	CaptureNone      CaptureMode = "none"
	CaptureStdout    CaptureMode = "stdout"
	CaptureStderr    CaptureMode = "stderr"
	CaptureSeparated CaptureMode = "separated"
	CaptureMerged    CaptureMode = "merged"
)

// MarshalJSON sends none and separated as the bool every qemu-ga accepts,
// the other modes by name.
func (c CaptureMode) MarshalJSON() ([]byte, error) {
	switch c {
	case CaptureNone:
		return []byte("false"), nil
	case CaptureSeparated:
		return []byte("true"), nil
	}
	return json.Marshal(string(c))
}

// UnmarshalJSON accepts a bool or a mode name.
func (c *CaptureMode) UnmarshalJSON(b []byte) error {
	var flag bool
	if err := json.Unmarshal(b, &flag); err == nil {
		*c = CaptureNone
		if flag {
			*c = CaptureSeparated
		}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("capture-output must be a bool or a string")
	}
	switch m := CaptureMode(s); m {
	case CaptureNone, CaptureStdout, CaptureStderr, CaptureSeparated, CaptureMerged:
		*c = m
		return nil
	}
	return fmt.Errorf("capture-output %q: use none, stdout, stderr, separated or merged", s)
}

// ExecPID is the reply of guest-exec.
type ExecPID struct {
	PID int `json:"pid"`
}

// ExecStatusArgs are the arguments of guest-exec-status.
type ExecStatusArgs struct {
	PID int `json:"pid"`
}

// ExecStatus is the reply of guest-exec-status. ExitCode is set when the
// process exited, Signal when a signal killed it.
type ExecStatus struct {
	Exited       bool   `json:"exited"`
	ExitCode     *int   `json:"exitcode,omitempty"`
	Signal       *int   `json:"signal,omitempty"`
	OutData      []byte `json:"out-data,omitempty"`
	ErrData      []byte `json:"err-data,omitempty"`
	OutTruncated bool   `json:"out-truncated,omitempty"`
	ErrTruncated bool   `json:"err-truncated,omitempty"`
}

// FileOpenArgs are the arguments of guest-file-open; the reply is the
// handle, a number.
type FileOpenArgs struct {
	Path string `json:"path"`
	// Mode is an fopen mode ("r" when empty).
	Mode string `json:"mode,omitempty"`
}

// FileHandleArgs are the arguments of guest-file-close.
type FileHandleArgs struct {
	Handle int64 `json:"handle"`
}

// FileReadArgs are the arguments of guest-file-read.
type FileReadArgs struct {
	Handle int64 `json:"handle"`
	Count  int   `json:"count,omitempty"`
}

// FileRead is the reply of guest-file-read.
type FileRead struct {
	Count  int    `json:"count"`
	BufB64 []byte `json:"buf-b64"`
	EOF    bool   `json:"eof"`
}

// FileWriteArgs are the arguments of guest-file-write.
type FileWriteArgs struct {
	Handle int64  `json:"handle"`
	BufB64 []byte `json:"buf-b64"`
	Count  *int   `json:"count,omitempty"`
}

// FileWrite is the reply of guest-file-write.
type FileWrite struct {
	Count int  `json:"count"`
	EOF   bool `json:"eof"`
}

// CPUStat is one element of stock qemu-ga's guest-get-cpustats reply
// (type "linux"); counters are in jiffies.
type CPUStat struct {
	Type      string `json:"type"`
	CPU       int    `json:"cpu"`
	User      uint64 `json:"user"`
	Nice      uint64 `json:"nice"`
	System    uint64 `json:"system"`
	Idle      uint64 `json:"idle"`
	IOWait    uint64 `json:"iowait"`
	IRQ       uint64 `json:"irq"`
	SoftIRQ   uint64 `json:"softirq"`
	Steal     uint64 `json:"steal"`
	Guest     uint64 `json:"guest"`
	GuestNice uint64 `json:"guestnice"`
}

// FSInfo is one element of stock qemu-ga's guest-get-fsinfo reply.
type FSInfo struct {
	Name       string  `json:"name"`
	Mountpoint string  `json:"mountpoint"`
	Type       string  `json:"type"`
	UsedBytes  *uint64 `json:"used-bytes,omitempty"`
	TotalBytes *uint64 `json:"total-bytes,omitempty"`
}

package vmhost

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// VM states reported by VMController.State.
const (
	StateStarting = "starting"
	StateRunning  = "running"
	StateStopping = "stopping"
	StateStopped  = "stopped"
	StateError    = "error"
)

// VMController is what a backend implements to be driven by vmhost. Every
// method must be safe to call from several goroutines at once; State, SSHPort
// and Backend must never block.
type VMController interface {
	// State returns "starting", "running", "stopping", "stopped" or "error".
	State() string
	// Stop brings the VM down gracefully within timeout: guest agent
	// shutdown, then the ACPI power button, then a kill, as the backend
	// supports them. It returns once the VM is down. Stopping a stopped VM
	// returns nil.
	Stop(ctx context.Context, timeout time.Duration) error
	// ForceStop brings the VM down at once and returns once it is gone.
	ForceStop(ctx context.Context) error
	// SSHPort is the host port forwarded to the guest's port 22, or 0.
	SSHPort() int
	// Backend names the backend: "qemu", "applevirt" or "fake".
	Backend() string
	// Wait blocks until the VM has exited. It returns nil for a clean stop
	// (a requested stop, or a guest that powered itself off) and an error
	// describing the crash otherwise. It may be called any number of times,
	// from any goroutine, and always returns the same result.
	Wait() error
}

// StopResult says how a VM went down.
type StopResult struct {
	// StoppedBy is the phase that brought the VM down: "agent", "acpi",
	// "quit", "kill" for QEMU, "graceful" or "kill" for the fake backend.
	StoppedBy string
}

// ModeStopper is implemented by controllers that can run a single stop phase
// and report which phase brought the VM down. Without it, the server accepts
// only ModeAuto and reports no stopped_by.
type ModeStopper interface {
	// StopMode stops the VM with the given mode ("" means ModeAuto) within
	// timeout. An unknown mode is an error naming the accepted ones.
	StopMode(ctx context.Context, timeout time.Duration, mode string) (StopResult, error)
}

// ForceStopReporter is implemented by controllers that report which phase a
// force stop used.
type ForceStopReporter interface {
	ForceStopResult(ctx context.Context) (StopResult, error)
}

// StoppedByReporter is implemented by controllers that remember how the VM
// went down ("agent", "acpi", "quit", "kill", "graceful", or "guest" for a
// guest that powered itself off); vmhost writes it into exit.json.
type StoppedByReporter interface {
	StoppedBy() string
}

// Describer is implemented by controllers that know more about their VM than
// VMController says: the name, accelerator, process IDs, paths. Describe
// must not block for long; it feeds the info method.
type Describer interface {
	Describe() Description
}

// Description is what a Describer reports for info.
type Description struct {
	Name      string
	StartedAt time.Time
	// Details holds backend-specific facts (accel, qemu_pid, cpus, ...).
	Details map[string]any
	// Paths are the files the backend made for the VM, keyed by the
	// layout.Path* names (console, serial_log, ...).
	Paths map[string]string
}

// AgentReporter is implemented by controllers with a guest agent channel.
// AgentInfo must not block: it returns the last known liveness.
type AgentReporter interface {
	AgentInfo() *AgentInfo
}

// GuestMessenger is implemented by controllers whose guest agent collects
// messages from guest programs (mb-agent's command socket). It enables
// MethodMessages and Request.AgentPoll. Neither method may block.
type GuestMessenger interface {
	// GuestMessages returns the collected messages numbered after after,
	// and the number of the last one.
	GuestMessages(after uint64) ([]GuestMessage, uint64)
	// PollAgent makes the agent be pinged (and its messages collected)
	// now and often for a few seconds.
	PollAgent()
}

// ExecRequest is a command to run in the guest.
type ExecRequest struct {
	Argv    []string
	Env     []string
	Stdin   []byte
	Timeout time.Duration
}

// ExecResult is the outcome of a command run in the guest.
type ExecResult struct {
	ExitCode     int
	Stdout       []byte
	Stderr       []byte
	OutTruncated bool
	ErrTruncated bool
}

// Errors an Executor wraps so that vmhost can report them as exec results
// (exit codes 124, 126 and 127) rather than as failures of the request.
var (
	// ErrExecTimeout: the command outlived its timeout. The Executor
	// returns what the command wrote with it, when it knows.
	ErrExecTimeout = errors.New("command timed out")
	// ErrExecStart: the guest could not start the command (no such
	// program, not executable).
	ErrExecStart = errors.New("the guest could not start the command")
)

// Executor is implemented by controllers that can run commands in the guest
// (through the guest agent). It enables MethodExec.
type Executor interface {
	Exec(ctx context.Context, req ExecRequest) (*ExecResult, error)
}

// MetricsReporter is implemented by controllers that can read guest metrics.
// It enables MethodMetrics. The document is JSON, cumulative counters only.
type MetricsReporter interface {
	Metrics(ctx context.Context) (json.RawMessage, error)
}

// codedError is an error that carries its Code* for the reply.
type codedError struct {
	code string
	err  error
}

func (e *codedError) Error() string     { return e.err.Error() }
func (e *codedError) Unwrap() error     { return e.err }
func (e *codedError) ErrorCode() string { return e.code }

// WithCode marks err with one of the Code* constants, so that the server
// replies with that code (the message stays err's). A backend uses it for
// errors a client must tell apart, e.g. CodeNotAvailable for a stop mode
// it does not have. WithCode(code, nil) is nil.
func WithCode(code string, err error) error {
	if err == nil {
		return nil
	}
	return &codedError{code: code, err: err}
}

// ErrorCode returns the Code* an error carries: the code given to WithCode,
// CodeTimeout for a deadline that ran out, CodeFailed otherwise ("" for
// nil).
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var ce interface{ ErrorCode() string }
	if errors.As(err, &ce) {
		return ce.ErrorCode()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return CodeTimeout
	}
	return CodeFailed
}

package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/internal/atomicfile"
	"github.com/mbvm/mb/vm/image"
	"github.com/mbvm/mb/vm/spec"
	"github.com/mbvm/mb/vmhost"
)

// UserStoppedName marks a VM the user stopped, so that no restart policy
// and no daemon restart brings it back until the user starts it again.
const UserStoppedName = "user-stopped"

// vm is the daemon's record of one VM.
type vm struct {
	name string
	dir  string

	// op serialises the operations that change the VM (start, stop, kill,
	// delete, restarts): concurrent requests on one VM queue here.
	op opLock

	mu         sync.Mutex
	spec       *spec.Spec
	specErr    error
	manifest   *image.Manifest // nil when the VM has no image or it failed to load
	state      string
	reason     string
	exitCode   *int
	stoppedBy  string
	restarts   int
	restartLog []time.Time
	cur        *run // the current vmhost, nil when none runs
	deleted    bool
	// gone is closed when the VM is deleted (ends log follows).
	gone chan struct{}
	// stopIntent is the user's last stop (true) or start (false), once
	// stopKnown; before that the marker file says.
	stopIntent, stopKnown bool
	ready                 bool // the current run reached readiness
	// lastSSHProbe spaces the SSH readiness probes (disk images without
	// an agent).
	lastSSHProbe time.Time
	// waitApp is the readiness a client waits for after a start with
	// wait=app ("*" for any), until waitUntil; "" when none.
	waitApp   string
	waitUntil time.Time
}

// newVM returns a stopped VM record.
func newVM(name, dir string) *vm {
	return &vm{name: name, dir: dir, state: api.StateStopped, op: make(opLock, 1), gone: make(chan struct{})}
}

// opLock is a mutex that a waiter can give up on when its context ends.
type opLock chan struct{}

// lock takes the lock, or returns ctx's error.
func (l opLock) lock(ctx context.Context) error {
	select {
	case l <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// unlock releases the lock.
func (l opLock) unlock() { <-l }

// run is one vmhost process.
type run struct {
	pid     int
	started time.Time
	// proc is set when this daemon spawned the vmhost (and reaps it).
	proc *os.Process
	// ref is the handle on an adopted vmhost (nil when its PID is unknown).
	ref *procRef
	// exited is closed when the vmhost process is gone.
	exited chan struct{}
	// done is closed once the exit has been recorded in the vm.
	done chan struct{}
	// waitStatus is the exit status of a spawned vmhost (after exited).
	waitStatus *os.ProcessState
}

func (v *vm) file(name string) string { return filepath.Join(v.dir, name) }

func (v *vm) socket() string { return v.file(vmhost.SocketName) }

// userStopped reports whether the user stopped the VM: the intent kept in
// memory, or, for a VM this daemon has not stopped or started, the marker
// file an earlier daemon left.
func (v *vm) userStopped() bool {
	v.mu.Lock()
	known, on := v.stopKnown, v.stopIntent
	v.mu.Unlock()
	if known {
		return on
	}
	_, err := os.Stat(v.file(UserStoppedName))
	return err == nil
}

// setUserStopped records the user's stop (on) or start. The intent is kept
// in memory first, so it holds even when the marker cannot be written (a
// full $MB_HOME); the marker keeps it for later daemons, and an error
// writing it is returned for the caller to log, never to stop on.
func (v *vm) setUserStopped(on bool) error {
	v.mu.Lock()
	v.stopKnown, v.stopIntent = true, on
	v.mu.Unlock()
	p := v.file(UserStoppedName)
	if !on {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	// Written beside and renamed over: never through a link planted there.
	if err := atomicfile.Write(p, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// setState changes the state under v.mu.
func (v *vm) setState(state, reason string) {
	v.mu.Lock()
	v.state, v.reason = state, reason
	v.mu.Unlock()
}

// current returns the current run, or nil.
func (v *vm) current() *run {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.cur
}

// snapshot is the API view of the VM from the daemon's own records (no
// vmhost call).
func (v *vm) snapshot() api.VM {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := api.VM{Name: v.name, State: v.state, Reason: v.reason, ExitCode: v.exitCode,
		StoppedBy: v.stoppedBy, Restarts: v.restarts, Dir: v.dir, Ready: v.ready}
	if v.stopKnown {
		out.UserStopped = v.stopIntent
	} else if _, err := os.Stat(v.file(UserStoppedName)); err == nil {
		out.UserStopped = true
	}
	if v.specErr != nil && out.Reason == "" {
		out.Reason = v.specErr.Error()
	}
	if s := v.spec; s != nil {
		out.Backend, out.Image, out.CPUs = s.Backend, s.Image, s.CPUs
		out.Memory, out.MemoryBytes = s.Memory.String(), uint64(s.Memory)
		out.SSHPort, out.Restart = s.SSHPort, string(s.Restart)
	}
	if r := v.cur; r != nil {
		out.PID = r.pid
		if !r.started.IsZero() {
			t := r.started.UTC()
			out.StartedAt = &t
			out.UptimeSeconds = time.Since(r.started).Round(time.Second).Seconds()
		}
	}
	return out
}

// Files a vmhost keeps in the VM directory (the contract of cmd/vmhost).
const ()

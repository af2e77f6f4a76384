package vmhost

import (
	"context"
	"errors"
	"time"

	"github.com/mbvm/mb/vm/snapshot"
)

// MethodSuspend saves the VM's state into its directory and ends the VM
// (Suspender); a later start of the VM resumes it.
const MethodSuspend Method = "suspend"

// DefaultSuspendTimeout bounds a suspend without timeout_seconds.
const DefaultSuspendTimeout = 2 * time.Minute

// Suspender is implemented by controllers that can save a running VM's
// memory and device state and end it, so that the next start resumes the
// guest where it was (the QEMU backend; applevirt's
// saveMachineStateTo/restoreMachineStateFrom on macOS 14 fit the same
// interface). A failed Suspend leaves the VM running and no saved state
// behind.
type Suspender interface {
	Suspend(ctx context.Context) error
}

// suspend answers MethodSuspend.
func (s *Server) suspend(ctx context.Context, req *Request) *Response {
	sp, ok := s.controller.(Suspender)
	if !ok {
		return errorReply(CodeNotAvailable, "the %s backend cannot suspend a VM: stop it instead", s.controller.Backend())
	}
	timeout := DefaultSuspendTimeout
	if req.TimeoutSeconds > 0 {
		timeout = time.Duration(req.TimeoutSeconds) * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := sp.Suspend(ctx); err != nil {
		code := ErrorCode(err)
		if errors.Is(err, context.DeadlineExceeded) {
			code = CodeTimeout
		}
		return &Response{Error: err.Error(), Code: code}
	}
	r := s.base()
	r.StoppedBy = "suspend"
	return r
}

// MethodSnapshot takes a named snapshot of the running VM (Snapshotter):
// memory, device state and disk at one instant; the VM runs on.
const MethodSnapshot Method = "snapshot"

// Snapshotter is implemented by controllers that can take named
// snapshots. Snapshot pauses the guest only while it saves, and the
// snapshot appears complete or not at all. The reply's Details carry the
// snapshot's manifest.
type Snapshotter interface {
	Snapshot(ctx context.Context, name string) (*snapshot.Manifest, error)
}

// snapshot answers MethodSnapshot.
func (s *Server) snapshot(ctx context.Context, req *Request) *Response {
	sp, ok := s.controller.(Snapshotter)
	if !ok {
		return errorReply(CodeNotAvailable, "the %s backend cannot take snapshots", s.controller.Backend())
	}
	if req.Name == "" {
		return errorReply(CodeBadRequest, `snapshot: give the snapshot's "name"`)
	}
	timeout := DefaultSuspendTimeout
	if req.TimeoutSeconds > 0 {
		timeout = time.Duration(req.TimeoutSeconds) * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	m, err := sp.Snapshot(ctx, req.Name)
	if err != nil {
		return &Response{Error: err.Error(), Code: ErrorCode(err)}
	}
	r := s.base()
	r.Details = map[string]any{"snapshot": m}
	return r
}

package api

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// StateSuspended is a VM whose memory and device state are saved in its
// directory: `mb start` resumes it, `mb start --cold` boots it afresh.
const StateSuspended = "suspended"

// SuspendRequest is the body of POST /v1/vms/{name}/suspend.
type SuspendRequest struct {
	// TimeoutSeconds bounds the save (0: 2 minutes).
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`
}

// Suspend saves a running VM's state and ends it; the next start resumes
// it.
func (c *Client) Suspend(ctx context.Context, name string, timeout time.Duration) (*VM, error) {
	var vm VM
	if err := c.call(ctx, http.MethodPost, vmPath(name, "/suspend"), SuspendRequest{TimeoutSeconds: seconds(timeout)}, &vm); err != nil {
		return nil, err
	}
	return &vm, nil
}

// SnapshotRequest is the body of POST /v1/vms/{name}/snapshots.
type SnapshotRequest struct {
	Name           string `json:"name"`
	TimeoutSeconds int    `json:"timeout_seconds,omitempty"`
}

// Snapshot describes one snapshot of a VM.
type Snapshot struct {
	Name      string    `json:"name"`
	VM        string    `json:"vm"`
	CreatedAt time.Time `json:"created_at"`
	// SizeBytes is the space its files take on disk (allocated blocks).
	SizeBytes uint64 `json:"size_bytes"`
	// RAM is "file" (memory in its own file) or "stream" (in the state).
	RAM       string `json:"ram"`
	MemoryMiB uint64 `json:"memory_mib"`
	CPUs      int    `json:"cpus"`
	HasDisk   bool   `json:"has_disk"`
	// Dependents are the VMs whose disk or saved state needs it.
	Dependents []string `json:"dependents,omitempty"`
}

// CloneRequest is the body of POST /v1/vms/{name}/clone.
type CloneRequest struct {
	// Name is the new VM's.
	Name string `json:"name"`
	// From is the snapshot to clone; empty takes a new one of the running
	// source, named clone-NAME.
	From           string `json:"from,omitempty"`
	TimeoutSeconds int    `json:"timeout_seconds,omitempty"`
}

// SaveSnapshot takes snapshot snap of the running VM name.
func (c *Client) SaveSnapshot(ctx context.Context, name, snap string) (*Snapshot, error) {
	var s Snapshot
	if err := c.call(ctx, http.MethodPost, vmPath(name, "/snapshots"), SnapshotRequest{Name: snap}, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Snapshots lists the snapshots of VM name.
func (c *Client) Snapshots(ctx context.Context, name string) ([]Snapshot, error) {
	var out []Snapshot
	if err := c.call(ctx, http.MethodGet, vmPath(name, "/snapshots"), nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// RemoveSnapshot removes snapshot snap of VM name.
func (c *Client) RemoveSnapshot(ctx context.Context, name, snap string) error {
	return c.call(ctx, http.MethodDelete, vmPath(name, "/snapshots/"+url.PathEscape(snap)), nil, nil)
}

// Clone makes and starts VM req.Name from a snapshot of VM name.
func (c *Client) Clone(ctx context.Context, name string, req CloneRequest) (*VM, error) {
	var vm VM
	if err := c.call(ctx, http.MethodPost, vmPath(name, "/clone"), req, &vm); err != nil {
		return nil, err
	}
	return &vm, nil
}

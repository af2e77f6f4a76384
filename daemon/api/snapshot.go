package api

import (
	"context"
	"net/http"
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

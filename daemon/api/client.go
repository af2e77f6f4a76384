package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// SocketName is the daemon socket's file name inside $MB_HOME.
const SocketName = "mb.sock"

// Client calls the daemon's HTTP API over its unix socket.
type Client struct {
	socket string
	http   *http.Client
}

// StatusError is an error reply of the daemon.
type StatusError struct {
	Status  int
	Message string
	// Code is the reply's machine-readable code (api.Code*), or empty.
	Code string
}

func (e *StatusError) Error() string { return e.Message }

// HasCode reports whether err is an error reply of the daemon with code
// (one of the Code* constants).
func HasCode(err error, code string) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == code
}

// IsNotFound reports whether err says the daemon knows no such VM or image
// (and nothing in the way of creating it).
func IsNotFound(err error) bool { return HasCode(err, CodeNotFound) }

// IsExists reports whether err says the VM or image already exists.
func IsExists(err error) bool { return HasCode(err, CodeExists) }

// NewClient returns a client for the daemon listening on socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns:    4,
		IdleConnTimeout: 30 * time.Second,
	}
	return &Client{socket: socket, http: &http.Client{Transport: tr}}
}

// Socket is the daemon socket path.
func (c *Client) Socket() string { return c.socket }

// Close drops idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

func (c *Client) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	if body == nil {
		return c.send(ctx, method, path, nil, "")
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	return c.send(ctx, method, path, b, "application/json")
}

// send makes one request and turns an error status into a *StatusError.
func (c *Client) send(ctx context.Context, method, path string, body []byte, ctype string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://mb"+path, rd)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() == nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
			errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.EPIPE)) {
			// The daemon died or was stopped while it worked on the
			// request, or since the last one (its socket refuses or is
			// gone). VMs outlive it and keep their state on disk.
			return nil, fmt.Errorf("the mb daemon at %s went away before it answered %s %s (was it stopped or killed?): "+
				"the VMs keep running and their state is kept; check with `mb ls` (which starts a new daemon) and retry: %w", c.socket, method, path, err)
		}
		return nil, fmt.Errorf("call the mb daemon at %s: %w", c.socket, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e Error
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("mb daemon answered %s: %s", resp.Status, strings.TrimSpace(string(data)))
		}
		return nil, &StatusError{Status: resp.StatusCode, Message: e.Error, Code: e.Code}
	}
	return resp, nil
}

func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode the daemon's reply to %s %s: %w", method, path, err)
	}
	return nil
}

func vmPath(name string, rest string) string {
	return "/v1/vms/" + url.PathEscape(name) + rest
}

// Ping checks that the daemon answers and returns its status.
func (c *Client) Ping(ctx context.Context) (*DaemonStatus, error) {
	var st DaemonStatus
	if err := c.call(ctx, http.MethodGet, "/v1/daemon", nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// StopDaemon asks the daemon to exit, stopping the VMs first when stopVMs.
func (c *Client) StopDaemon(ctx context.Context, stopVMs bool) error {
	return c.call(ctx, http.MethodPost, "/v1/daemon/stop", DaemonStopRequest{StopVMs: stopVMs}, nil)
}

// List returns every VM.
func (c *Client) List(ctx context.Context) ([]VM, error) {
	var vms []VM
	if err := c.call(ctx, http.MethodGet, "/v1/vms", nil, &vms); err != nil {
		return nil, err
	}
	return vms, nil
}

// Inspect returns one VM with its spec and vmhost details.
func (c *Client) Inspect(ctx context.Context, name string) (*VM, error) {
	var vm VM
	if err := c.call(ctx, http.MethodGet, vmPath(name, ""), nil, &vm); err != nil {
		return nil, err
	}
	return &vm, nil
}

// Create creates a VM from a spec given as YAML or JSON (the spec.yaml
// field names).
func (c *Client) Create(ctx context.Context, specDoc []byte) (*VM, error) {
	resp, err := c.send(ctx, http.MethodPost, "/v1/vms", specDoc, "application/yaml")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var vm VM
	if err := json.NewDecoder(resp.Body).Decode(&vm); err != nil {
		return nil, fmt.Errorf("decode the daemon's reply to create: %w", err)
	}
	return &vm, nil
}

// Start starts a VM and returns once its vmhost reports running.
func (c *Client) Start(ctx context.Context, name string, timeout time.Duration) (*VM, error) {
	return c.StartWith(ctx, name, StartRequest{TimeoutSeconds: seconds(timeout)})
}

// StartWith starts a VM with the options of req (see StartRequest).
func (c *Client) StartWith(ctx context.Context, name string, req StartRequest) (*VM, error) {
	var vm VM
	err := c.call(ctx, http.MethodPost, vmPath(name, "/start"), req, &vm)
	if err != nil {
		return nil, err
	}
	return &vm, nil
}

// Stop stops a VM gracefully within timeout (0: the spec's), or at once
// when force.
func (c *Client) Stop(ctx context.Context, name string, timeout time.Duration, force bool) (*VM, error) {
	var vm VM
	err := c.call(ctx, http.MethodPost, vmPath(name, "/stop"), StopRequest{TimeoutSeconds: seconds(timeout), Force: force}, &vm)
	if err != nil {
		return nil, err
	}
	return &vm, nil
}

// Kill stops a VM at once.
func (c *Client) Kill(ctx context.Context, name string) (*VM, error) {
	var vm VM
	if err := c.call(ctx, http.MethodPost, vmPath(name, "/kill"), nil, &vm); err != nil {
		return nil, err
	}
	return &vm, nil
}

// Delete removes a VM and its directory. A running VM is refused (409)
// unless force, which stops it first.
func (c *Client) Delete(ctx context.Context, name string, force bool) error {
	p := vmPath(name, "")
	if force {
		p += "?force=1"
	}
	return c.call(ctx, http.MethodDelete, p, nil, nil)
}

// Exec runs a command in the guest.
func (c *Client) Exec(ctx context.Context, name string, req ExecRequest) (*ExecResult, error) {
	var res ExecResult
	if err := c.call(ctx, http.MethodPost, vmPath(name, "/exec"), req, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// Metrics returns the guest's metrics document.
func (c *Client) Metrics(ctx context.Context, name string) (json.RawMessage, error) {
	var m json.RawMessage
	if err := c.call(ctx, http.MethodGet, vmPath(name, "/metrics"), nil, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// Logs streams a VM's log: source "serial" (default) or "vmhost". With
// follow, the stream continues as the log grows until ctx ends.
func (c *Client) Logs(ctx context.Context, name, source string, follow bool) (io.ReadCloser, error) {
	q := url.Values{}
	if source != "" {
		q.Set("source", source)
	}
	if follow {
		q.Set("follow", "1")
	}
	resp, err := c.do(ctx, http.MethodGet, vmPath(name, "/logs?"+q.Encode()), nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Events streams lifecycle events, one JSON object per line: the recent
// history first, then, with follow, new events as they happen.
func (c *Client) Events(ctx context.Context, follow bool) (io.ReadCloser, error) {
	p := "/v1/events"
	if follow {
		p += "?follow=1"
	}
	resp, err := c.do(ctx, http.MethodGet, p, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

func seconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	s := int((d + time.Second - 1) / time.Second)
	return s
}

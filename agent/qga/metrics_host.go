package qga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/mbvm/mb/agent/qgaproto"
	"time"
)

// maxProcFile bounds a /proc file read through guest-file-read.
const maxProcFile = 1 << 20

// Metrics returns the guest's metrics document (see Metrics): mb-agent's
// mb-get-metrics as it is, or, from a stock qemu-ga, one assembled from
// guest-get-cpustats, guest-get-fsinfo, guest-network-get-interfaces,
// guest-get-time and /proc files read with guest-file-*. Sections a stock
// agent cannot give are left out.
func (c *Client) Metrics(ctx context.Context) (json.RawMessage, error) {
	info, err := c.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if info.IsMBAgent() {
		var raw json.RawMessage
		if err := c.Call(ctx, qgaproto.MetricsCommand, nil, &raw); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
		return raw, nil
	}
	m, err := c.stockMetrics(ctx, info)
	if err != nil {
		return nil, fmt.Errorf("metrics from qemu-ga: %w", err)
	}
	return json.Marshal(m)
}

func (c *Client) stockMetrics(ctx context.Context, info *qgaproto.Info) (*qgaproto.Metrics, error) {
	m := &qgaproto.Metrics{Source: "qemu-ga"}
	var errs []error
	// soft notes a failed optional section; a failure of the channel
	// itself ends the whole call.
	soft := func(what string, err error) bool {
		if err == nil {
			return true
		}
		var qe *qgaproto.Error
		if !errors.As(err, &qe) {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
		return false
	}
	if info.Supports("guest-get-time") {
		var ns int64
		if soft("guest-get-time", c.Call(ctx, "guest-get-time", nil, &ns)) {
			m.TimeNs = ns
		}
	}
	if m.TimeNs == 0 {
		m.TimeNs = time.Now().UnixNano()
	}
	if info.Supports("guest-get-cpustats") {
		var stats []qgaproto.CPUStat
		if soft("guest-get-cpustats", c.Call(ctx, "guest-get-cpustats", nil, &stats)) && len(stats) > 0 {
			cpu := &qgaproto.CPUCounters{CPUs: len(stats)}
			for _, s := range stats {
				cpu.User += s.User
				cpu.Nice += s.Nice
				cpu.System += s.System
				cpu.Idle += s.Idle
				cpu.IOWait += s.IOWait
				cpu.IRQ += s.IRQ
				cpu.SoftIRQ += s.SoftIRQ
				cpu.Steal += s.Steal
			}
			m.CPU = cpu
		}
	}
	if info.Supports("guest-get-fsinfo") {
		var fss []qgaproto.FSInfo
		if soft("guest-get-fsinfo", c.Call(ctx, "guest-get-fsinfo", nil, &fss)) {
			for _, f := range fss {
				if f.TotalBytes == nil || qgaproto.IsPseudoFS(qgaproto.Mount{Mountpoint: f.Mountpoint, Type: f.Type}) {
					continue
				}
				fs := qgaproto.Filesystem{Mountpoint: f.Mountpoint, Device: f.Name, Type: f.Type, TotalBytes: *f.TotalBytes}
				if f.UsedBytes != nil {
					fs.UsedBytes = *f.UsedBytes
					fs.FreeBytes = fs.TotalBytes - min(fs.UsedBytes, fs.TotalBytes)
				}
				m.Filesystems = append(m.Filesystems, fs)
			}
		}
	}
	if info.Supports("guest-network-get-interfaces") {
		ifaces, err := c.Interfaces(ctx)
		if soft("guest-network-get-interfaces", err) {
			for _, i := range ifaces {
				if i.Statistics != nil {
					m.Interfaces = append(m.Interfaces, qgaproto.NetworkCounters{Name: i.Name, RxBytes: i.Statistics.RxBytes, TxBytes: i.Statistics.TxBytes})
				}
			}
		}
	}
	if info.Supports("guest-file-open") && info.Supports("guest-file-read") {
		if b, err := c.ReadFile(ctx, "/proc/meminfo", maxProcFile); soft("/proc/meminfo", err) {
			if mem, err := qgaproto.ParseMeminfo(b); err == nil {
				m.Memory = &mem
			}
		}
		if b, err := c.ReadFile(ctx, "/proc/loadavg", maxProcFile); soft("/proc/loadavg", err) {
			m.LoadAvg, _ = qgaproto.ParseLoadavg(b)
		}
		if b, err := c.ReadFile(ctx, "/proc/uptime", maxProcFile); soft("/proc/uptime", err) {
			m.UptimeSeconds, _ = qgaproto.ParseUptime(b)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return m, nil
}

// ReadFile reads a guest file of at most limit bytes with guest-file-open,
// guest-file-read and guest-file-close.
func (c *Client) ReadFile(ctx context.Context, path string, limit int) ([]byte, error) {
	var data []byte
	err := c.do(ctx, c.opts.CallTimeout, func(s *session) error {
		var h int64
		if err := s.call("guest-file-open", qgaproto.FileOpenArgs{Path: path, Mode: "r"}, &h); err != nil {
			return err
		}
		var readErr error
		for {
			var r qgaproto.FileRead
			if readErr = s.call("guest-file-read", qgaproto.FileReadArgs{Handle: h, Count: 64 << 10}, &r); readErr != nil {
				break
			}
			data = append(data, r.BufB64...)
			if len(data) > limit {
				readErr = fmt.Errorf("guest file %s is larger than %d bytes", path, limit)
				break
			}
			if r.EOF || r.Count == 0 {
				break
			}
		}
		closeErr := s.call("guest-file-close", qgaproto.FileHandleArgs{Handle: h}, nil)
		return errors.Join(readErr, closeErr)
	})
	return data, err
}

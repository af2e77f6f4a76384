package daemon

import (
	"math"

	"github.com/mbvm/mb/agent/qgaproto"
)

// Plugin names of hbd's client that a VM's metrics are mapped onto, so that
// thresholds written for hbd apply to mb's VMs unchanged.
const (
	pluginCPU     = "cpu_monitor"
	pluginMemory  = "memory_monitor"
	pluginDisk    = "disk_monitor"
	pluginNetwork = "network_monitor"
)

// pluginData is one plugin's data in hbd's names, ready for the monitor.
type pluginData struct {
	Plugin string
	Fields map[string]any
}

// metricsMapper maps the successive metrics documents of one VM. It keeps
// the previous document, since CPU shares and network deltas come from the
// difference of two cumulative samples.
type metricsMapper struct {
	prev *qgaproto.Metrics
}

// next maps cur and remembers it for the following call.
func (m *metricsMapper) next(cur *qgaproto.Metrics) []pluginData {
	out := mapMetrics(m.prev, cur)
	m.prev = cur
	return out
}

// gib is the unit of disk_monitor's *_gb fields (GiB, as psutil-based
// clients compute them).
const gib = 1 << 30

// mapMetrics maps one metrics document of a VM (see qgaproto.Metrics) onto
// hbd's plugins: cpu_monitor, memory_monitor, disk_monitor and
// network_monitor. prev is the VM's previous document, nil for none; the
// fields that need two samples (CPU shares, network deltas and rates) are
// left out without one, and so they are when the counters went backwards
// (the guest rebooted between the samples). A plugin whose section the
// document lacks is left out. Percentages are rounded to two decimals.
func mapMetrics(prev, cur *qgaproto.Metrics) []pluginData {
	if cur == nil {
		return nil
	}
	if prev != nil && !inOrder(prev, cur) {
		prev = nil
	}
	var out []pluginData
	if f := cpuFields(prev, cur); len(f) > 0 {
		out = append(out, pluginData{pluginCPU, f})
	}
	if m := cur.Memory; m != nil {
		out = append(out, pluginData{pluginMemory, memoryFields(m)})
	}
	if len(cur.Filesystems) > 0 {
		out = append(out, pluginData{pluginDisk, diskFields(cur.Filesystems)})
	}
	if f := networkFields(prev, cur); f != nil {
		out = append(out, pluginData{pluginNetwork, f})
	}
	return out
}

// inOrder reports whether cur can follow prev: same guest boot, counters
// not gone backwards.
func inOrder(prev, cur *qgaproto.Metrics) bool {
	if prev.UptimeSeconds > 0 && cur.UptimeSeconds > 0 && cur.UptimeSeconds < prev.UptimeSeconds {
		return false
	}
	if prev.TimeNs > 0 && cur.TimeNs > 0 && cur.TimeNs <= prev.TimeNs {
		return false
	}
	if prev.CPU != nil && cur.CPU != nil && cur.CPU.Total() < prev.CPU.Total() {
		return false
	}
	return true
}

func cpuFields(prev, cur *qgaproto.Metrics) map[string]any {
	f := map[string]any{}
	if cur.UptimeSeconds > 0 {
		f["uptime_seconds"] = cur.UptimeSeconds
	}
	for i, name := range []string{"load_1", "load_5", "load_15"} {
		if i < len(cur.LoadAvg) {
			f[name] = cur.LoadAvg[i]
		}
	}
	if c := cur.CPU; c != nil {
		if c.CPUs > 0 {
			f["cpu_core_count"] = c.CPUs
		}
		if prev != nil && prev.CPU != nil {
			p := *prev.CPU
			if total := float64(c.Total()) - float64(p.Total()); total > 0 {
				share := func(a, b uint64) float64 { return round2(100 * (float64(a) - float64(b)) / total) }
				busy, _ := qgaproto.CPUBusy(p, *c)
				f["cpu_percent"] = round2(busy)
				f["cpu_user"] = share(c.User+c.Nice, p.User+p.Nice)
				f["cpu_system"] = share(c.System+c.IRQ+c.SoftIRQ, p.System+p.IRQ+p.SoftIRQ)
				f["cpu_idle"] = share(c.Idle, p.Idle)
				f["cpu_iowait"] = share(c.IOWait, p.IOWait)
				f["cpu_steal"] = share(c.Steal, p.Steal)
			}
		}
	}
	return f
}

func memoryFields(m *qgaproto.Memory) map[string]any {
	used := m.UsedBytes
	if used == 0 && m.TotalBytes >= m.AvailableBytes {
		used = m.TotalBytes - m.AvailableBytes
	}
	pct := percent(used, m.TotalBytes)
	swapUsed := uint64(0)
	if m.SwapTotalBytes > m.SwapFreeBytes {
		swapUsed = m.SwapTotalBytes - m.SwapFreeBytes
	}
	return map[string]any{
		"memory_total":     m.TotalBytes,
		"memory_used":      used,
		"memory_available": m.AvailableBytes,
		// hbd's thresholds name it percent; its C client memory_percent.
		"percent":        pct,
		"memory_percent": pct,
		"swap_total":     m.SwapTotalBytes,
		"swap_used":      swapUsed,
		"swap_free":      m.SwapFreeBytes,
		"swap_percent":   percent(swapUsed, m.SwapTotalBytes),
	}
}

func diskFields(fss []qgaproto.Filesystem) map[string]any {
	parts := map[string]any{}
	for _, fs := range fss {
		if fs.Mountpoint == "" {
			continue
		}
		free := fs.FreeBytes
		if free == 0 && fs.TotalBytes > fs.UsedBytes {
			free = fs.TotalBytes - fs.UsedBytes
		}
		// As df computes it: of the space unprivileged users can have.
		pct := percent(fs.UsedBytes, fs.UsedBytes+free)
		parts[fs.Mountpoint] = map[string]any{
			"total":    fs.TotalBytes,
			"used":     fs.UsedBytes,
			"free":     free,
			"percent":  pct,
			"free_gb":  round2(float64(free) / gib),
			"total_gb": round2(float64(fs.TotalBytes) / gib),
		}
	}
	return map[string]any{"partitions": parts}
}

// networkFields skips the loopback interface, as hbd's clients do by
// default. nil when the document has no interfaces.
func networkFields(prev, cur *qgaproto.Metrics) map[string]any {
	if len(cur.Interfaces) == 0 {
		return nil
	}
	before := map[string]qgaproto.NetworkCounters{}
	secs := 0.0
	if prev != nil {
		for _, n := range prev.Interfaces {
			before[n.Name] = n
		}
		if prev.TimeNs > 0 && cur.TimeNs > prev.TimeNs {
			secs = float64(cur.TimeNs-prev.TimeNs) / 1e9
		}
	}
	ifaces := map[string]any{}
	var recv, sent uint64
	for _, n := range cur.Interfaces {
		if n.Name == "" || n.Name == "lo" {
			continue
		}
		f := map[string]any{"bytes_recv": n.RxBytes, "bytes_sent": n.TxBytes}
		recv += n.RxBytes
		sent += n.TxBytes
		if p, ok := before[n.Name]; ok && n.RxBytes >= p.RxBytes && n.TxBytes >= p.TxBytes {
			dr, ds := n.RxBytes-p.RxBytes, n.TxBytes-p.TxBytes
			f["bytes_recv_delta"], f["bytes_sent_delta"] = dr, ds
			if secs > 0 {
				f["bytes_recv_per_sec"] = round2(float64(dr) / secs)
				f["bytes_sent_per_sec"] = round2(float64(ds) / secs)
			}
		}
		ifaces[n.Name] = f
	}
	return map[string]any{"bytes_recv": recv, "bytes_sent": sent, "interfaces": ifaces}
}

// percent is 100*part/whole rounded to two decimals, 0 for an empty whole.
func percent(part, whole uint64) float64 {
	if whole == 0 {
		return 0
	}
	return round2(100 * float64(part) / float64(whole))
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }

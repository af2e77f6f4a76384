package plugins

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/mbvm/mb/agent/qgaproto"
)

// osInfo is hbc's os_info: what the machine runs.
type osInfo struct{ version string }

func (osInfo) Name() string { return "os_info" }

func (p osInfo) Collect(context.Context) (Fields, error) {
	f := Fields{
		"os":            runtimeOS(),
		"architecture":  runtime.GOARCH,
		"agent":         "mb-agent",
		"hbc_version":   p.version,
		"agent_version": p.version,
		"go_version":    runtime.Version(),
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		f["kernel"] = unix.ByteSliceToString(u.Release[:])
		f["architecture"] = unix.ByteSliceToString(u.Machine[:])
		f["hostname"] = unix.ByteSliceToString(u.Nodename[:])
	}
	for _, path := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		rel := parseOSRelease(data)
		if v := rel["PRETTY_NAME"]; v != "" {
			f["distro"] = v
		}
		if v := rel["ID"]; v != "" {
			f["distro_id"] = v
		}
		if v := rel["VERSION_ID"]; v != "" {
			f["distro_version"] = v
		}
		break
	}
	if _, ok := f["distro"]; !ok {
		f["distro"] = "unknown"
	}
	return f, nil
}

func runtimeOS() string {
	if runtime.GOOS == "linux" {
		return "Linux"
	}
	return runtime.GOOS
}

// parseOSRelease reads os-release(5) KEY=value lines, unquoting values.
func parseOSRelease(data []byte) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		if u, err := strconv.Unquote(v); err == nil {
			v = u
		} else {
			v = strings.Trim(v, `"'`)
		}
		out[k] = v
	}
	return out
}

// cpuMonitor is hbc's cpu_monitor. Percentages are over the time since the
// previous collection (since boot for the first).
type cpuMonitor struct {
	perCore bool

	mu        sync.Mutex
	last      qgaproto.CPUCounters
	lastCores []qgaproto.CPUCounters
}

func (*cpuMonitor) Name() string { return "cpu_monitor" }

func (p *cpuMonitor) Collect(context.Context) (Fields, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil, fmt.Errorf("read /proc/stat: %w", err)
	}
	total, err := qgaproto.ParseProcStat(data)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	d := diff(total, p.last)
	p.last = total
	t := d.Total()
	busy := t - d.Idle - d.IOWait
	f := Fields{
		"cpu_percent":    percent(busy, t),
		"cpu_user":       percent(d.User+d.Nice, t),
		"cpu_system":     percent(d.System+d.IRQ+d.SoftIRQ, t),
		"cpu_idle":       percent(d.Idle, t),
		"cpu_iowait":     percent(d.IOWait, t),
		"cpu_steal":      percent(d.Steal, t),
		"cpu_core_count": total.CPUs,
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if l, err := qgaproto.ParseLoadavg(b); err == nil {
			f["load_1"], f["load_5"], f["load_15"] = l[0], l[1], l[2]
		}
		// The fourth field is running/total scheduling entities.
		if fs := strings.Fields(string(b)); len(fs) >= 4 {
			if _, n, ok := strings.Cut(fs[3], "/"); ok {
				if v, err := strconv.Atoi(n); err == nil {
					f["process_count"] = v
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/uptime"); err == nil {
		if up, err := qgaproto.ParseUptime(b); err == nil {
			f["uptime_seconds"] = up
		}
	}
	if p.perCore {
		cores := coreCounters(data)
		per := make([]float64, len(cores))
		for i, c := range cores {
			var prev qgaproto.CPUCounters
			if i < len(p.lastCores) {
				prev = p.lastCores[i]
			}
			dc := diff(c, prev)
			per[i] = percent(dc.Total()-dc.Idle-dc.IOWait, dc.Total())
		}
		p.lastCores = cores
		f["per_core"] = per
	}
	return f, nil
}

// coreCounters parses the cpuN lines of /proc/stat.
func coreCounters(data []byte) []qgaproto.CPUCounters {
	var out []qgaproto.CPUCounters
	for line := range strings.SplitSeq(string(data), "\n") {
		if !strings.HasPrefix(line, "cpu") || strings.HasPrefix(line, "cpu ") {
			continue
		}
		c, err := qgaproto.ParseProcStat([]byte("cpu" + strings.TrimLeft(line[3:], "0123456789")))
		if err == nil {
			out = append(out, c)
		}
	}
	return out
}

// diff is a - b, counter by counter; a counter that went backwards counts 0.
func diff(a, b qgaproto.CPUCounters) qgaproto.CPUCounters {
	sub := func(x, y uint64) uint64 {
		if x < y {
			return 0
		}
		return x - y
	}
	return qgaproto.CPUCounters{
		CPUs: a.CPUs, User: sub(a.User, b.User), Nice: sub(a.Nice, b.Nice), System: sub(a.System, b.System),
		Idle: sub(a.Idle, b.Idle), IOWait: sub(a.IOWait, b.IOWait), IRQ: sub(a.IRQ, b.IRQ),
		SoftIRQ: sub(a.SoftIRQ, b.SoftIRQ), Steal: sub(a.Steal, b.Steal),
	}
}

// memoryMonitor is hbc's memory_monitor: RAM and swap.
type memoryMonitor struct{}

func (memoryMonitor) Name() string { return "memory_monitor" }

func (memoryMonitor) Collect(context.Context) (Fields, error) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return nil, fmt.Errorf("read /proc/meminfo: %w", err)
	}
	m, err := qgaproto.ParseMeminfo(data)
	if err != nil {
		return nil, err
	}
	free := meminfoKB(data, "MemFree") * 1024
	pct := percent(m.UsedBytes, m.TotalBytes)
	f := Fields{
		"memory_total":     m.TotalBytes,
		"memory_used":      m.UsedBytes,
		"memory_available": m.AvailableBytes,
		"memory_free":      free,
		"memory_percent":   pct,
		"percent":          pct,
	}
	if m.SwapTotalBytes > 0 {
		used := m.SwapTotalBytes - min(m.SwapFreeBytes, m.SwapTotalBytes)
		f["swap_total"] = m.SwapTotalBytes
		f["swap_used"] = used
		f["swap_free"] = m.SwapFreeBytes
		f["swap_percent"] = percent(used, m.SwapTotalBytes)
	}
	return f, nil
}

func meminfoKB(data []byte, key string) uint64 {
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			if fs := strings.Fields(rest); len(fs) > 0 {
				v, _ := strconv.ParseUint(fs[0], 10, 64)
				return v
			}
		}
	}
	return 0
}

// diskMonitor is hbc's disk_monitor: usage per mounted filesystem (only
// the listed mounts, when mounts is set) and I/O counters per disk.
type diskMonitor struct {
	mounts []string
}

func (*diskMonitor) Name() string { return "disk_monitor" }

func (p *diskMonitor) Collect(context.Context) (Fields, error) {
	data, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return nil, fmt.Errorf("read /proc/mounts: %w", err)
	}
	parts := map[string]any{}
	seen := map[string]bool{}
	for _, m := range qgaproto.ParseMounts(data) {
		if seen[m.Mountpoint] {
			continue
		}
		if len(p.mounts) > 0 {
			if !slices.Contains(p.mounts, m.Mountpoint) {
				continue
			}
		} else if qgaproto.IsPseudoFS(m) {
			continue
		}
		var st unix.Statfs_t
		if err := unix.Statfs(m.Mountpoint, &st); err != nil || st.Blocks == 0 {
			continue
		}
		seen[m.Mountpoint] = true
		bs := uint64(st.Bsize)
		total, free := uint64(st.Blocks)*bs, uint64(st.Bavail)*bs
		used := (uint64(st.Blocks) - uint64(st.Bfree)) * bs
		parts[m.Mountpoint] = map[string]any{
			"device": m.Device, "fstype": m.Type,
			"total": total, "used": used, "free": free,
			// hbc's percent is of the space users can have: used + available.
			"percent": percent(used, used+free),
			"free_gb": round(float64(free) / (1 << 30)),
		}
	}
	f := Fields{"partitions": parts, "partition_count": len(parts)}
	if len(p.mounts) > 0 {
		var missing []string
		for _, m := range p.mounts {
			if !seen[m] {
				missing = append(missing, m)
			}
		}
		if len(missing) > 0 {
			f["missing_mounts"] = missing
		}
	}
	if b, err := os.ReadFile("/proc/diskstats"); err == nil {
		if io := diskIO(b); len(io) > 0 {
			f["io"] = io
		}
	}
	return f, nil
}

// diskIO reads /proc/diskstats: bytes read and written and operations per
// whole disk (partitions and virtual devices without I/O are left out).
func diskIO(data []byte) map[string]any {
	out := map[string]any{}
	for line := range strings.SplitSeq(string(data), "\n") {
		fs := strings.Fields(line)
		if len(fs) < 10 {
			continue
		}
		name := fs[2]
		if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "ram") {
			continue
		}
		if _, err := os.Stat("/sys/block/" + name); err != nil {
			continue // a partition
		}
		n := func(i int) uint64 { v, _ := strconv.ParseUint(fs[i], 10, 64); return v }
		reads, writes := n(3), n(7)
		if reads+writes == 0 {
			continue
		}
		out[name] = map[string]any{
			"read_count": reads, "write_count": writes,
			"read_bytes": n(5) * 512, "write_bytes": n(9) * 512,
		}
	}
	return out
}

// networkMonitor is hbc's network_monitor: counters per interface, with
// the change since the previous collection, and the TCP connection count.
type networkMonitor struct {
	skip []string

	mu   sync.Mutex
	last map[string][2]uint64
}

func (*networkMonitor) Name() string { return "network_monitor" }

func (p *networkMonitor) Collect(context.Context) (Fields, error) {
	data, err := os.ReadFile("/proc/net/dev")
	if err != nil {
		return nil, fmt.Errorf("read /proc/net/dev: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := map[string][2]uint64{}
	ifaces := map[string]any{}
	for _, c := range parseNetDev(data) {
		if slices.Contains(p.skip, c.name) {
			continue
		}
		e := map[string]any{
			"bytes_recv": c.rxBytes, "bytes_sent": c.txBytes,
			"packets_recv": c.rxPackets, "packets_sent": c.txPackets,
			"errin": c.rxErrs, "errout": c.txErrs,
		}
		if prev, ok := p.last[c.name]; ok {
			e["bytes_recv_delta"] = sub(c.rxBytes, prev[0])
			e["bytes_sent_delta"] = sub(c.txBytes, prev[1])
		}
		now[c.name] = [2]uint64{c.rxBytes, c.txBytes}
		ifaces[c.name] = e
	}
	p.last = now
	f := Fields{"interfaces": ifaces, "interface_count": len(ifaces)}
	conns := 0
	for _, path := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		if b, err := os.ReadFile(path); err == nil {
			if n := bytes.Count(b, []byte("\n")); n > 1 {
				conns += n - 1
			}
		}
	}
	f["connection_count"] = conns
	return f, nil
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

type netDev struct {
	name                       string
	rxBytes, rxPackets, rxErrs uint64
	txBytes, txPackets, txErrs uint64
}

// parseNetDev reads /proc/net/dev's per-interface counters.
func parseNetDev(data []byte) []netDev {
	var out []netDev
	for line := range strings.SplitSeq(string(data), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fs := strings.Fields(rest)
		if len(fs) < 11 {
			continue
		}
		n := func(i int) uint64 { v, _ := strconv.ParseUint(fs[i], 10, 64); return v }
		out = append(out, netDev{
			name:    strings.TrimSpace(name),
			rxBytes: n(0), rxPackets: n(1), rxErrs: n(2),
			txBytes: n(8), txPackets: n(9), txErrs: n(10),
		})
	}
	return out
}

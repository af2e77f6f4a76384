package socktop

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mbvm/mb/agent/qgaproto"
)

// Metrics is the reply to get_metrics, with socktop's field names.
type Metrics struct {
	SampledAtMs  int64         `json:"sampled_at_ms"`
	CPUTotal     float32       `json:"cpu_total"`
	CPUPerCore   []float32     `json:"cpu_per_core"`
	MemTotal     uint64        `json:"mem_total"`
	MemUsed      uint64        `json:"mem_used"`
	SwapTotal    uint64        `json:"swap_total"`
	SwapUsed     uint64        `json:"swap_used"`
	Hostname     string        `json:"hostname"`
	CPUTempC     *float32      `json:"cpu_temp_c"`
	Disks        []Disk        `json:"disks"`
	Networks     []Network     `json:"networks"`
	TopProcesses []ProcessInfo `json:"top_processes"`
	GPUs         []any         `json:"gpus"`
	ProcessCount *int          `json:"process_count,omitempty"`
}

// Disk is one filesystem, as get_disks and the metrics report it.
type Disk struct {
	Name      string `json:"name"`
	Total     uint64 `json:"total"`
	Available uint64 `json:"available"`
}

// Network is one interface's cumulative byte counters.
type Network struct {
	Name        string `json:"name"`
	Received    uint64 `json:"received"`
	Transmitted uint64 `json:"transmitted"`
}

// ProcessInfo is one process: CPU in percent of the whole machine, memory
// resident in bytes.
type ProcessInfo struct {
	PID      uint32  `json:"pid"`
	Name     string  `json:"name"`
	CPUUsage float32 `json:"cpu_usage"`
	MemBytes uint64  `json:"mem_bytes"`
}

// topInMetrics is how many processes the metrics reply carries, taken from
// a process sample that is still fresh (none is taken for it).
const topInMetrics = 5

// collector reads /proc on demand and keeps what rates need: the previous
// CPU counters, per core and per process.
type collector struct {
	proc string
	now  func() time.Time

	metrics cache[Metrics]
	disks   cache[[]Disk]
	procs   cache[[]ProcessInfo]

	mu        sync.Mutex
	prevCores []qgaproto.CPUCounters
	prevTotal qgaproto.CPUCounters
	procTotal qgaproto.CPUCounters // machine's CPU at the last process sample
	prevProcs map[procKey]uint64   // jiffies per process at the last sample
}

// procKey tells a process from a later one that reuses its PID.
type procKey struct {
	pid   int
	start uint64
}

func newCollector(procRoot string, metricsTTL, disksTTL, procsTTL time.Duration) *collector {
	c := &collector{proc: procRoot, now: time.Now}
	c.metrics.ttl, c.disks.ttl, c.procs.ttl = metricsTTL, disksTTL, procsTTL
	return c
}

func (c *collector) read(name string) []byte {
	b, _ := os.ReadFile(filepath.Join(c.proc, name))
	return b
}

// Metrics returns the metrics, sampled at most once per TTL.
func (c *collector) Metrics() Metrics {
	return c.metrics.get(c.now, c.sampleMetrics)
}

// Disks returns the filesystems, sampled at most once per TTL.
func (c *collector) Disks() []Disk {
	return c.disks.get(c.now, c.sampleDisks)
}

// Processes returns every process, busiest first, sampled at most once per
// TTL.
func (c *collector) Processes() []ProcessInfo {
	return c.procs.get(c.now, c.sampleProcesses)
}

func (c *collector) sampleMetrics() Metrics {
	m := Metrics{
		SampledAtMs:  c.now().UnixMilli(),
		CPUPerCore:   []float32{},
		Disks:        c.Disks(),
		Networks:     []Network{},
		TopProcesses: []ProcessInfo{},
	}
	m.Hostname, _ = os.Hostname()
	total, cores := parseCores(c.read("stat"))
	c.mu.Lock()
	if len(c.prevCores) == len(cores) {
		busy, _ := qgaproto.CPUBusy(c.prevTotal, total)
		m.CPUTotal = float32(busy)
		for i := range cores {
			b, _ := qgaproto.CPUBusy(c.prevCores[i], cores[i])
			m.CPUPerCore = append(m.CPUPerCore, float32(b))
		}
	} else {
		// The first sample: usage since boot.
		busy, _ := qgaproto.CPUBusy(qgaproto.CPUCounters{}, total)
		m.CPUTotal = float32(busy)
		for i := range cores {
			b, _ := qgaproto.CPUBusy(qgaproto.CPUCounters{}, cores[i])
			m.CPUPerCore = append(m.CPUPerCore, float32(b))
		}
	}
	c.prevTotal, c.prevCores = total, cores
	c.mu.Unlock()
	if mem, err := qgaproto.ParseMeminfo(c.read("meminfo")); err == nil {
		m.MemTotal, m.MemUsed = mem.TotalBytes, mem.UsedBytes
		m.SwapTotal, m.SwapUsed = mem.SwapTotalBytes, mem.SwapTotalBytes-min(mem.SwapFreeBytes, mem.SwapTotalBytes)
	}
	if nets, err := qgaproto.ParseNetDev(c.read("net/dev")); err == nil {
		for _, n := range nets {
			m.Networks = append(m.Networks, Network{Name: n.Name, Received: n.RxBytes, Transmitted: n.TxBytes})
		}
	}
	if procs, ok := c.procs.fresh(c.now); ok {
		m.TopProcesses = procs[:min(topInMetrics, len(procs))]
	}
	if n := c.countProcesses(); n >= 0 {
		m.ProcessCount = &n
	}
	return m
}

// parseCores reads the aggregate and per-core lines of /proc/stat.
func parseCores(data []byte) (total qgaproto.CPUCounters, cores []qgaproto.CPUCounters) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		var v [8]uint64
		for i := 0; i < len(v) && i+1 < len(f); i++ {
			v[i], _ = strconv.ParseUint(f[i+1], 10, 64)
		}
		cc := qgaproto.CPUCounters{User: v[0], Nice: v[1], System: v[2], Idle: v[3], IOWait: v[4], IRQ: v[5], SoftIRQ: v[6], Steal: v[7]}
		if f[0] == "cpu" {
			total = cc
		} else {
			cores = append(cores, cc)
		}
	}
	return total, cores
}

// countProcesses counts the numeric entries of /proc, or returns -1.
func (c *collector) countProcesses() int {
	ents, err := os.ReadDir(c.proc)
	if err != nil {
		return -1
	}
	n := 0
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			n++
		}
	}
	return n
}

func (c *collector) sampleDisks() []Disk {
	out := []Disk{}
	seen := map[string]bool{}
	for _, m := range qgaproto.ParseMounts(c.read("mounts")) {
		if qgaproto.IsPseudoFS(m) || seen[m.Device] || seen[m.Mountpoint] {
			continue
		}
		var st unix.Statfs_t
		if err := unix.Statfs(m.Mountpoint, &st); err != nil || st.Blocks == 0 {
			continue
		}
		seen[m.Device], seen[m.Mountpoint] = true, true
		name := filepath.Base(m.Device)
		if !strings.HasPrefix(m.Device, "/") {
			name = m.Device + ":" + m.Mountpoint
		}
		bs := uint64(st.Bsize)
		out = append(out, Disk{Name: name, Total: st.Blocks * bs, Available: st.Bavail * bs})
	}
	return out
}

// sampleProcesses reads every /proc/PID/stat. A process's CPU share is its
// jiffies since the previous sample over the machine's jiffies (all CPUs)
// in the same span; on the first sample, and for a process new since it,
// that span is unknown and the share is 0.
func (c *collector) sampleProcesses() []ProcessInfo {
	total, _ := parseCores(c.read("stat"))
	ents, _ := os.ReadDir(c.proc)
	page := uint64(os.Getpagesize())
	cur := make(map[procKey]uint64, len(ents))
	out := make([]ProcessInfo, 0, len(ents))
	c.mu.Lock()
	defer c.mu.Unlock()
	span := float64(total.Total()) - float64(c.procTotal.Total())
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, ok := parsePidStat(c.read(e.Name() + "/stat"))
		if !ok {
			continue // exited meanwhile
		}
		key := procKey{pid, st.start}
		cur[key] = st.jiffies
		p := ProcessInfo{PID: uint32(pid), Name: st.name, MemBytes: st.rssPages * page}
		if prev, ok := c.prevProcs[key]; ok && span > 0 && st.jiffies >= prev {
			p.CPUUsage = float32(min(100, 100*float64(st.jiffies-prev)/span))
		}
		out = append(out, p)
	}
	c.prevProcs, c.procTotal = cur, total
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].CPUUsage != out[j].CPUUsage {
			return out[i].CPUUsage > out[j].CPUUsage
		}
		return out[i].MemBytes > out[j].MemBytes
	})
	return out
}

// pidStat is what sampleProcesses needs from /proc/PID/stat.
type pidStat struct {
	name     string
	jiffies  uint64 // utime + stime
	start    uint64 // starttime, in jiffies after boot
	rssPages uint64
}

// parsePidStat parses /proc/PID/stat. The command name is between the
// first "(" and the last ")", since it may itself hold parentheses and
// spaces; the fields after it are counted from 3 (the state).
func parsePidStat(b []byte) (pidStat, bool) {
	open, close := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || close < open {
		return pidStat{}, false
	}
	f := strings.Fields(string(b[close+1:]))
	if len(f) < 22 { // up to rss, field 24
		return pidStat{}, false
	}
	num := func(field int) uint64 { v, _ := strconv.ParseUint(f[field-3], 10, 64); return v }
	return pidStat{
		name:     string(b[open+1 : close]),
		jiffies:  num(14) + num(15),
		start:    num(22),
		rssPages: num(24),
	}, true
}

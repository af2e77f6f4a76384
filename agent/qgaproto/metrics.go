package qgaproto

// Metrics is the document mb-get-metrics returns, and the one the Client
// assembles from stock QGA commands for qemu-ga. Every counter is
// cumulative (CPU jiffies since boot, bytes since boot), so two callers
// never disturb each other: a caller computes rates from two samples (see
// CPUBusy). Sections the guest cannot give are omitted.
type Metrics struct {
	// Source is "mb-agent" or "qemu-ga".
	Source string `json:"source"`
	// TimeNs is the guest's clock when sampled, in ns since the epoch.
	TimeNs        int64             `json:"time_ns,omitempty"`
	UptimeSeconds float64           `json:"uptime_seconds,omitempty"`
	CPU           *CPUCounters      `json:"cpu,omitempty"`
	Memory        *Memory           `json:"memory,omitempty"`
	LoadAvg       []float64         `json:"loadavg,omitempty"`
	Filesystems   []Filesystem      `json:"filesystems,omitempty"`
	Interfaces    []NetworkCounters `json:"interfaces,omitempty"`
}

// CPUCounters are the guest's CPU time, summed over all CPUs, in jiffies
// (USER_HZ, 100 per second on Linux).
type CPUCounters struct {
	CPUs    int    `json:"cpus"`
	User    uint64 `json:"user"`
	Nice    uint64 `json:"nice"`
	System  uint64 `json:"system"`
	Idle    uint64 `json:"idle"`
	IOWait  uint64 `json:"iowait"`
	IRQ     uint64 `json:"irq"`
	SoftIRQ uint64 `json:"softirq"`
	Steal   uint64 `json:"steal"`
}

// Total is the sum of all counters.
func (c CPUCounters) Total() uint64 {
	return c.User + c.Nice + c.System + c.Idle + c.IOWait + c.IRQ + c.SoftIRQ + c.Steal
}

// CPUBusy returns the share of CPU time, in percent of all CPUs, that was
// busy and that was stolen by the hypervisor between two samples. It
// returns zeros when the samples are not in order.
func CPUBusy(prev, cur CPUCounters) (busy, steal float64) {
	total := float64(cur.Total()) - float64(prev.Total())
	if total <= 0 {
		return 0, 0
	}
	idle := float64(cur.Idle+cur.IOWait) - float64(prev.Idle+prev.IOWait)
	st := float64(cur.Steal) - float64(prev.Steal)
	busy = 100 * (total - idle - st) / total
	steal = 100 * st / total
	return max(busy, 0), max(steal, 0)
}

// Memory is the guest's memory, in bytes. Used is Total - Available.
type Memory struct {
	TotalBytes     uint64 `json:"total_bytes"`
	AvailableBytes uint64 `json:"available_bytes"`
	UsedBytes      uint64 `json:"used_bytes"`
	SwapTotalBytes uint64 `json:"swap_total_bytes"`
	SwapFreeBytes  uint64 `json:"swap_free_bytes"`
}

// Filesystem is one mounted filesystem. Free is what unprivileged users may
// still use.
type Filesystem struct {
	Mountpoint string `json:"mountpoint"`
	Device     string `json:"device,omitempty"`
	Type       string `json:"type,omitempty"`
	TotalBytes uint64 `json:"total_bytes"`
	UsedBytes  uint64 `json:"used_bytes"`
	FreeBytes  uint64 `json:"free_bytes,omitempty"`
}

// NetworkCounters are one interface's byte counters.
type NetworkCounters struct {
	Name    string `json:"name"`
	RxBytes uint64 `json:"rx_bytes"`
	TxBytes uint64 `json:"tx_bytes"`
}

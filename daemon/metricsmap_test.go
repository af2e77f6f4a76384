package daemon

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/mbvm/mb/agent/qgaproto"
)

// Two documents as a mini VM's mb-agent returned them, 2 s apart.
const (
	miniDoc1 = `{"source":"mb-agent","time_ns":1795669508966775402,"uptime_seconds":2.87,"cpu":{"cpus":1,"user":24,"nice":0,"system":183,"idle":13,"iowait":0,"irq":0,"softirq":2,"steal":0},"memory":{"total_bytes":492847104,"available_bytes":455499776,"used_bytes":37347328,"swap_total_bytes":0,"swap_free_bytes":0},"loadavg":[0,0,0],"interfaces":[{"name":"lo","rx_bytes":0,"tx_bytes":0},{"name":"eth0","rx_bytes":1180,"tx_bytes":684}]}`
	miniDoc2 = `{"source":"mb-agent","time_ns":1795669511051843012,"uptime_seconds":4.95,"cpu":{"cpus":1,"user":25,"nice":0,"system":188,"idle":210,"iowait":0,"irq":0,"softirq":4,"steal":0},"memory":{"total_bytes":492847104,"available_bytes":455262208,"used_bytes":37584896,"swap_total_bytes":0,"swap_free_bytes":0},"loadavg":[0,0,0],"interfaces":[{"name":"lo","rx_bytes":0,"tx_bytes":0},{"name":"eth0","rx_bytes":1290,"tx_bytes":1110}]}`
)

func doc(t *testing.T, s string) *qgaproto.Metrics {
	t.Helper()
	var m qgaproto.Metrics
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return &m
}

// plugins turns the mapper's output into plugin -> fields.
func plugins(ps []pluginData) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, p := range ps {
		out[p.Plugin] = p.Fields
	}
	return out
}

func TestMapMetrics(t *testing.T) {
	cpu := func(user, system, idle, iowait, steal uint64) *qgaproto.CPUCounters {
		return &qgaproto.CPUCounters{CPUs: 2, User: user, System: system, Idle: idle, IOWait: iowait, Steal: steal}
	}
	tests := []struct {
		name      string
		prev, cur *qgaproto.Metrics
		want      map[string]map[string]any
	}{
		{
			name: "nil document",
			want: map[string]map[string]any{},
		},
		{
			name: "first sample: no CPU shares, no network deltas",
			cur: &qgaproto.Metrics{UptimeSeconds: 10, LoadAvg: []float64{0.5, 0.25, 0.125}, CPU: cpu(10, 10, 80, 0, 0),
				Interfaces: []qgaproto.NetworkCounters{{Name: "lo", RxBytes: 5, TxBytes: 5}, {Name: "eth0", RxBytes: 100, TxBytes: 50}}},
			want: map[string]map[string]any{
				"cpu_monitor": {"uptime_seconds": 10.0, "load_1": 0.5, "load_5": 0.25, "load_15": 0.125, "cpu_core_count": 2},
				"network_monitor": {"bytes_recv": uint64(100), "bytes_sent": uint64(50),
					"interfaces": map[string]any{"eth0": map[string]any{"bytes_recv": uint64(100), "bytes_sent": uint64(50)}}},
			},
		},
		{
			name: "CPU shares from the deltas of two samples",
			prev: &qgaproto.Metrics{TimeNs: 1e9, UptimeSeconds: 1, CPU: cpu(100, 100, 800, 0, 0)},
			// +60 user, +20 system, +10 idle, +5 iowait, +5 steal of 100.
			cur: &qgaproto.Metrics{TimeNs: 2e9, UptimeSeconds: 2, CPU: cpu(160, 120, 810, 5, 5)},
			want: map[string]map[string]any{
				"cpu_monitor": {"uptime_seconds": 2.0, "cpu_core_count": 2, "cpu_percent": 80.0, "cpu_user": 60.0,
					"cpu_system": 20.0, "cpu_idle": 10.0, "cpu_iowait": 5.0, "cpu_steal": 5.0},
			},
		},
		{
			name: "a reboot between samples: counters went backwards, no shares",
			prev: &qgaproto.Metrics{UptimeSeconds: 500, CPU: cpu(1000, 1000, 8000, 0, 0),
				Interfaces: []qgaproto.NetworkCounters{{Name: "eth0", RxBytes: 9000, TxBytes: 9000}}},
			cur: &qgaproto.Metrics{UptimeSeconds: 3, CPU: cpu(10, 10, 10, 0, 0),
				Interfaces: []qgaproto.NetworkCounters{{Name: "eth0", RxBytes: 10, TxBytes: 20}}},
			want: map[string]map[string]any{
				"cpu_monitor": {"uptime_seconds": 3.0, "cpu_core_count": 2},
				"network_monitor": {"bytes_recv": uint64(10), "bytes_sent": uint64(20),
					"interfaces": map[string]any{"eth0": map[string]any{"bytes_recv": uint64(10), "bytes_sent": uint64(20)}}},
			},
		},
		{
			name: "memory and swap",
			cur: &qgaproto.Metrics{Memory: &qgaproto.Memory{TotalBytes: 1000, AvailableBytes: 250, UsedBytes: 750,
				SwapTotalBytes: 400, SwapFreeBytes: 300}},
			want: map[string]map[string]any{
				"cpu_monitor": {},
				"memory_monitor": {"memory_total": uint64(1000), "memory_used": uint64(750), "memory_available": uint64(250),
					"percent": 75.0, "memory_percent": 75.0, "swap_total": uint64(400), "swap_used": uint64(100),
					"swap_free": uint64(300), "swap_percent": 25.0},
			},
		},
		{
			name: "memory without used_bytes, no swap",
			cur:  &qgaproto.Metrics{Memory: &qgaproto.Memory{TotalBytes: 3000, AvailableBytes: 2000}},
			want: map[string]map[string]any{
				"cpu_monitor": {},
				"memory_monitor": {"memory_total": uint64(3000), "memory_used": uint64(1000), "memory_available": uint64(2000),
					"percent": 33.33, "memory_percent": 33.33, "swap_total": uint64(0), "swap_used": uint64(0),
					"swap_free": uint64(0), "swap_percent": 0.0},
			},
		},
		{
			name: "disks per mount, percent as df counts it",
			cur: &qgaproto.Metrics{Filesystems: []qgaproto.Filesystem{
				{Mountpoint: "/", TotalBytes: 10 * gib, UsedBytes: 6 * gib, FreeBytes: 2 * gib},
				{Mountpoint: "/data", TotalBytes: 4 * gib, UsedBytes: 1 * gib},
				{Mountpoint: ""},
			}},
			want: map[string]map[string]any{
				"cpu_monitor": {},
				"disk_monitor": {"partitions": map[string]any{
					"/": map[string]any{"total": uint64(10 * gib), "used": uint64(6 * gib), "free": uint64(2 * gib),
						"percent": 75.0, "free_gb": 2.0, "total_gb": 10.0},
					"/data": map[string]any{"total": uint64(4 * gib), "used": uint64(1 * gib), "free": uint64(3 * gib),
						"percent": 25.0, "free_gb": 3.0, "total_gb": 4.0},
				}},
			},
		},
		{
			name: "network deltas and rates per interface, loopback skipped",
			prev: &qgaproto.Metrics{TimeNs: 10e9, Interfaces: []qgaproto.NetworkCounters{{Name: "eth0", RxBytes: 1000, TxBytes: 500}}},
			cur: &qgaproto.Metrics{TimeNs: 12e9, Interfaces: []qgaproto.NetworkCounters{{Name: "lo", RxBytes: 7, TxBytes: 7},
				{Name: "eth0", RxBytes: 1600, TxBytes: 700}, {Name: "eth1", RxBytes: 1, TxBytes: 2}}},
			want: map[string]map[string]any{
				"cpu_monitor": {},
				"network_monitor": {"bytes_recv": uint64(1601), "bytes_sent": uint64(702), "interfaces": map[string]any{
					"eth0": map[string]any{"bytes_recv": uint64(1600), "bytes_sent": uint64(700),
						"bytes_recv_delta": uint64(600), "bytes_sent_delta": uint64(200),
						"bytes_recv_per_sec": 300.0, "bytes_sent_per_sec": 100.0},
					"eth1": map[string]any{"bytes_recv": uint64(1), "bytes_sent": uint64(2)},
				}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := plugins(mapMetrics(tt.prev, tt.cur))
			// An empty cpu_monitor is dropped; compare it as absent.
			if len(tt.want["cpu_monitor"]) == 0 {
				delete(tt.want, "cpu_monitor")
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("mapMetrics:\n got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

// A real pair of documents from a mini VM: the mapper keeps the previous
// one, so the second call yields the CPU share and the network delta.
func TestMetricsMapperKeepsPrevious(t *testing.T) {
	var m metricsMapper
	first := plugins(m.next(doc(t, miniDoc1)))
	if _, ok := first["cpu_monitor"]["cpu_percent"]; ok {
		t.Errorf("cpu_percent from a single sample: %v", first["cpu_monitor"])
	}
	second := plugins(m.next(doc(t, miniDoc2)))
	// 1 user + 5 system + 2 softirq busy of 205 jiffies.
	if got, want := second["cpu_monitor"]["cpu_percent"], 3.9; got != want {
		t.Errorf("cpu_percent = %v, want %v (%v)", got, want, second["cpu_monitor"])
	}
	eth0 := second["network_monitor"]["interfaces"].(map[string]any)["eth0"].(map[string]any)
	if eth0["bytes_recv_delta"] != uint64(110) || eth0["bytes_sent_delta"] != uint64(426) {
		t.Errorf("eth0 deltas: %v", eth0)
	}
	if got := second["memory_monitor"]["percent"]; got != 7.63 {
		t.Errorf("memory percent = %v, want 7.63", got)
	}
}

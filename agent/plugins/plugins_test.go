package plugins

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/internal/testenv"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// byName builds from a JSON config (as ~/.hbc.json holds it) and indexes
// the plugins.
func byName(t *testing.T, cfgJSON string) map[string]Scheduled {
	t.Helper()
	var cfg Config
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		t.Fatal(err)
	}
	ps, err := Build(cfg, "test", quiet)
	if err != nil {
		t.Fatalf("Build(%s): %v", cfgJSON, err)
	}
	out := map[string]Scheduled{}
	for _, p := range ps {
		out[p.Name()] = p
	}
	return out
}

func collect(t *testing.T, p Plugin) Fields {
	t.Helper()
	f, err := p.Collect(context.Background())
	if err != nil {
		t.Fatalf("%s: %v", p.Name(), err)
	}
	// Every result must survive JSON, as the wire's @-JSON.
	if _, err := json.Marshal(f); err != nil {
		t.Fatalf("%s: fields do not encode: %v", p.Name(), err)
	}
	return f
}

func TestBuildDefaults(t *testing.T) {
	ps := byName(t, `{}`)
	var names []string
	for _, n := range Names {
		if _, ok := ps[n]; ok {
			names = append(names, n)
		}
	}
	want := []string{"os_info", "cpu_monitor", "memory_monitor", "disk_monitor", "network_monitor"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("default plugins %v, want %v", names, want)
	}
	if !ps["os_info"].Info() || ps["cpu_monitor"].Interval != DefaultMonitorInterval {
		t.Errorf("os_info info=%v, cpu interval %v", ps["os_info"].Info(), ps["cpu_monitor"].Interval)
	}
	ps = byName(t, `{"cpu_monitor":{"interval":5},"memory_monitor":{"enabled":false},"zfs_monitor":{}}`)
	if ps["cpu_monitor"].Interval != 5*time.Second {
		t.Errorf("cpu interval %v, want 5s", ps["cpu_monitor"].Interval)
	}
	if _, ok := ps["memory_monitor"]; ok {
		t.Error("memory_monitor runs although enabled: false")
	}
}

func TestBuildRejectsBadOptions(t *testing.T) {
	for cfg, want := range map[string]string{
		`{"cpu_monitor":{"interval":"often"}}`:                                           "interval: want a number",
		`{"cpu_monitor":{"interval":0}}`:                                                 "positive number of seconds",
		`{"disk_monitor":{"mounts":"/"}}`:                                                "list of strings",
		`{"nagios_runner":{"commands":[{"name":"x","command":"check_x"}]}}`:              "not an absolute path",
		`{"nagios_runner":{"commands":[{"name":"x","command":"/nonexistent/check_x"}]}}`: "no such file",
		`{"nagios_runner":{"commands":[{"name":"a b","command":"/bin/true"}]}}`:          "name",
		`{"nagios_runner":{"commands":[{"name":"x","command":"/bin/true 'open"}]}}`:      "unbalanced",
		`{"ping_monitor":{"hosts":["127.0.0.1"],"count":0}}`:                             "count",
	} {
		var c Config
		if err := json.Unmarshal([]byte(cfg), &c); err != nil {
			t.Fatal(err)
		}
		if _, err := Build(c, "test", quiet); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Build(%s) = %v, want an error with %q", cfg, err, want)
		}
	}
	// A file that is not executable is refused too.
	f := filepath.Join(t.TempDir(), "check_plain")
	if err := os.WriteFile(f, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Build(Config{"nagios_runner": {"commands": []any{map[string]any{"name": "p", "command": f}}}}, "test", quiet)
	if err == nil || !strings.Contains(err.Error(), "not an executable") {
		t.Errorf("non-executable check: %v", err)
	}
}

func TestSystemPlugins(t *testing.T) {
	ps := byName(t, `{"cpu_monitor":{"per_core":true},"disk_monitor":{"mounts":["/","/no/such/mount"]}}`)
	osi := collect(t, ps["os_info"])
	if osi["os"] != "Linux" || osi["kernel"] == "" || osi["hbc_version"] != "test" {
		t.Errorf("os_info %v", osi)
	}
	cpu := ps["cpu_monitor"]
	collect(t, cpu)
	c := collect(t, cpu)
	if n, _ := c["cpu_core_count"].(int); n < 1 {
		t.Errorf("cpu_core_count %v", c["cpu_core_count"])
	}
	if p, _ := c["cpu_percent"].(float64); p < 0 || p > 100 {
		t.Errorf("cpu_percent %v", c["cpu_percent"])
	}
	if pc, _ := c["per_core"].([]float64); len(pc) != c["cpu_core_count"].(int) {
		t.Errorf("per_core %v for %v cores", c["per_core"], c["cpu_core_count"])
	}
	for _, k := range []string{"load_1", "load_15", "uptime_seconds", "process_count"} {
		if _, ok := c[k]; !ok {
			t.Errorf("cpu_monitor lacks %s: %v", k, c)
		}
	}
	m := collect(t, ps["memory_monitor"])
	if tot, _ := m["memory_total"].(uint64); tot == 0 || m["memory_used"].(uint64) > tot {
		t.Errorf("memory %v", m)
	}
	d := collect(t, ps["disk_monitor"])
	parts := d["partitions"].(map[string]any)
	if len(parts) != 1 || parts["/"] == nil {
		t.Errorf("disk partitions with mounts [/]: %v", parts)
	}
	if root, _ := parts["/"].(map[string]any); root != nil && root["total"].(uint64) == 0 {
		t.Errorf("/ has no size: %v", root)
	}
	if !reflect.DeepEqual(d["missing_mounts"], []string{"/no/such/mount"}) {
		t.Errorf("missing_mounts %v", d["missing_mounts"])
	}
}

func TestNetworkMonitorSkipsInterfaces(t *testing.T) {
	def := collect(t, byName(t, `{}`)["network_monitor"])
	if _, ok := def["interfaces"].(map[string]any)["lo"]; ok {
		t.Errorf("lo reported although skipped by default: %v", def)
	}
	p := byName(t, `{"network_monitor":{"skip_interfaces":[]}}`)["network_monitor"]
	collect(t, p)
	all := collect(t, p)
	lo, ok := all["interfaces"].(map[string]any)["lo"].(map[string]any)
	if !ok {
		t.Fatalf("lo missing with skip_interfaces []: %v", all)
	}
	if _, ok := lo["bytes_recv_delta"]; !ok {
		t.Errorf("no delta on the second collection: %v", lo)
	}
}

func TestPingLoopback(t *testing.T) {
	p := byName(t, `{"ping_monitor":{"hosts":["127.0.0.1"],"count":3,"timeout":5}}`)["ping_monitor"]
	f := collect(t, p)
	r := f["hosts"].(map[string]any)["127.0.0.1"].(pingResult)
	if strings.Contains(r.Error, "no ICMP socket") {
		testenv.Need(t, "an ICMP socket: run as root, or add your group to net.ipv4.ping_group_range ("+r.Error+")")
	}
	if r.Error != "" {
		t.Fatalf("ping 127.0.0.1: %s", r.Error)
	}
	if r.Received != 3 || r.Loss != 0 || r.RTT <= 0 || r.Min > r.Max || r.Socket == "" {
		t.Errorf("ping 127.0.0.1: %+v", r)
	}
	t.Logf("ping over a %s socket: %+v", r.Socket, r)
}

func TestPingSummary(t *testing.T) {
	r := pingResult{Sent: 4}
	summarize(&r, []time.Duration{10 * time.Millisecond, 14 * time.Millisecond, 12 * time.Millisecond})
	want := pingResult{Sent: 4, Received: 3, Loss: 25, RTT: 12, Min: 10, Max: 14, Jitter: 3}
	if r != want {
		t.Errorf("summary %+v, want %+v", r, want)
	}
}

func TestNagiosRunner(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ok := script("check_ok", `echo "LOAD OK - load average: 0.10 | load1=0.100;5.000;10.000;0; load5=0.2;;;0;"`)
	warn := script("check_warn", `echo "DISK WARNING - free space: / 900 MB | '/ free'=900MB;1000;500;0;2000"; exit 1`)
	crit := script("check_crit", `echo "CRIT $1"; exit 2`)
	odd := script("check_odd", `echo "weird"; exit 7`)
	cfg := Config{"nagios_runner": {"commands": []any{
		map[string]any{"name": "check_load", "command": ok},
		map[string]any{"name": "check_disk_root", "command": warn},
		map[string]any{"name": "check_arg", "command": crit + ` "two words"`},
		map[string]any{"name": "check_odd", "command": odd},
	}}}
	ps, err := Build(cfg, "test", quiet)
	if err != nil {
		t.Fatal(err)
	}
	var nr Plugin
	for _, p := range ps {
		if p.Name() == "nagios_runner" {
			nr = p
		}
	}
	f := collect(t, nr)
	for k, want := range map[string]any{
		"check_load_status_code": 0, "check_load_status": "OK", "check_load_output": "LOAD OK - load average: 0.10",
		"check_load_load1": 0.1, "check_load_load5": 0.2,
		"check_disk_root_status_code": 1, "check_disk_root_status": "WARNING", "check_disk_root_free": 900.0, "check_disk_root_free_uom": "MB",
		"check_arg_status_code": 2, "check_arg_status": "CRITICAL", "check_arg_output": "CRIT two words",
		"check_odd_status_code": 3, "check_odd_status": "UNKNOWN",
	} {
		if f[k] != want {
			t.Errorf("%s = %#v, want %#v", k, f[k], want)
		}
	}
}

func TestParsePerfdata(t *testing.T) {
	got := parsePerfdata(` time=0.012s;;;0.000 size=512B 'a b'=5% 'it''s'=1 bad novalue= x=U c=3c '/'=2`)
	want := []perfValue{{"time", 0.012, "s"}, {"size", 512, "B"}, {"a_b", 5, "%"}, {"it_s", 1, ""}, {"c", 3, "c"}, {"value", 2, ""}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parsePerfdata = %+v\nwant %+v", got, want)
	}
}

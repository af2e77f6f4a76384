package fleet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/internal/testenv"
	"github.com/mbvm/mb/monitor"
)

func (r *rig) do(method, path, token string, body io.Reader) (int, map[string]any, []byte) {
	r.t.Helper()
	req, err := http.NewRequest(method, r.srv.URL+path, body)
	if err != nil {
		r.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := r.srv.Client().Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m, b
}

func (r *rig) register(host, ip, iface, token string) (int, map[string]any) {
	r.t.Helper()
	body := fmt.Sprintf(`{"hostname":%q,"ip_address":%q,"interface":%q}`, host, ip, iface)
	code, m, _ := r.do("POST", "/api/register", token, strings.NewReader(body))
	return code, m
}

func TestTrackerRegister(t *testing.T) {
	r := newRig(t, Settings{}, true)
	code, m := r.register("vm-1", "192.0.2.10", "eth0", "")
	if code != 200 || m["status"] != "registered" {
		t.Fatalf("register: %d %v", code, m)
	}
	if ts, _ := m["timestamp"].(string); ts != r.clk.Now().UTC().Format(time.RFC3339) {
		t.Errorf("timestamp %v", m["timestamp"])
	}
	// The interval is learned from the gaps: the shortest of the last few.
	for _, gap := range []time.Duration{30 * time.Second, 30 * time.Second, 30 * time.Second} {
		r.clk.Add(gap)
		if code, m := r.register("vm-1", "192.0.2.10", "eth0", ""); code != 200 {
			t.Fatalf("register: %d %v", code, m)
		}
	}
	h, ok := r.host("vm-1")
	if !ok || h.Source != SourceTracker || h.Interval != 30*time.Second || h.Reach != monitor.Up {
		t.Fatalf("vm-1: %+v", h)
	}
	// An address change is kept in the history.
	r.clk.Add(30 * time.Second)
	r.register("vm-1", "192.0.2.11", "eth1", "")
	h, _ = r.host("vm-1")
	if n := len(h.Addresses); n != 2 || h.Addresses[0].Address != "192.0.2.10" || h.Addresses[1].Address != "192.0.2.11" {
		t.Errorf("address history %+v", h.Addresses)
	}
	// Without an interface: "unknown".
	r.register("vm-2", "2001:db8::2", "", "")

	code, _, body := r.do("GET", "/api/vms", "", nil)
	var vms []RegisteredVM
	if err := json.Unmarshal(body, &vms); code != 200 || err != nil || len(vms) != 2 {
		t.Fatalf("GET /api/vms: %d %s", code, body)
	}
	if v := vms[0]; v.Hostname != "vm-1" || v.IPAddress != "192.0.2.11" || v.Interface != "eth1" || v.Status != "online" || !v.LastSeen.Equal(r.clk.Now()) {
		t.Errorf("vm-1 entry %+v", v)
	}
	if v := vms[1]; v.Hostname != "vm-2" || v.Interface != "unknown" || v.IPAddress != "2001:db8::2" {
		t.Errorf("vm-2 entry %+v", v)
	}
	// A machine that stops registering goes offline (overdue).
	r.clk.Add(time.Minute)
	if err := r.eng.Tick(context.Background(), r.clk.Now()); err != nil {
		t.Fatal(err)
	}
	_, _, body = r.do("GET", "/api/vms", "", nil)
	json.Unmarshal(body, &vms)
	if vms[0].Status != "offline" {
		t.Errorf("vm-1 after a missed interval: %+v", vms[0])
	}
	if h, _ := r.host("vm-1"); h.Reach != monitor.Overdue {
		t.Errorf("vm-1 reach %s", h.Reach)
	}

	if code, _, _ := r.do("DELETE", "/api/vms/vm-2", "", nil); code != 200 {
		t.Errorf("DELETE: %d", code)
	}
	if _, ok := r.host("vm-2"); ok {
		t.Error("vm-2 still tracked")
	}
	if code, _, _ := r.do("DELETE", "/api/vms/vm-2", "", nil); code != 404 {
		t.Errorf("second DELETE: %d", code)
	}
}

func TestTrackerRefusals(t *testing.T) {
	r := newRig(t, Settings{MaxHosts: 3}, true)
	for _, c := range []struct {
		name, body string
		code       int
		want       string
	}{
		{"bad JSON", `{"hostname":`, 400, "bad JSON"},
		{"missing hostname", `{"ip_address":"192.0.2.1"}`, 400, "missing hostname"},
		{"missing ip", `{"hostname":"a"}`, 400, "missing ip_address"},
		{"not an IP", `{"hostname":"a","ip_address":"example.com"}`, 400, "not an IP"},
		{"bad name", `{"hostname":"a b;rm","ip_address":"192.0.2.1"}`, 400, "host name"},
		{"huge", `{"hostname":"` + strings.Repeat("a", 10<<20) + `"}`, 413, "over"},
		{"deep", strings.Repeat("[", 60000), 400, "bad JSON"},
	} {
		code, m, _ := r.do("POST", "/api/register", "", strings.NewReader(c.body))
		if msg, _ := m["error"].(string); code != c.code || !strings.Contains(msg, c.want) {
			t.Errorf("%s: %d %v", c.name, code, m)
		}
	}
	if code, _, _ := r.do("GET", "/api/register", "", nil); code != 405 {
		t.Errorf("GET /api/register: %d", code)
	}
	if code, _, _ := r.do("PUT", "/api/vms", "", nil); code != 405 {
		t.Errorf("PUT /api/vms: %d", code)
	}
	// max_hosts: new names refused, existing ones keep registering.
	for i := 0; i < 3; i++ {
		if code, m := r.register(fmt.Sprintf("h%d", i), "192.0.2.1", "eth0", ""); code != 200 {
			t.Fatalf("h%d: %d %v", i, code, m)
		}
	}
	if code, m := r.register("h3", "192.0.2.1", "eth0", ""); code != 503 || !strings.Contains(fmt.Sprint(m["error"]), "max_hosts") {
		t.Errorf("past max_hosts: %d %v", code, m)
	}
	if code, _ := r.register("h0", "192.0.2.2", "eth0", ""); code != 200 {
		t.Errorf("existing host refused: %d", code)
	}
	if s := r.f.Stats(); s.HostsRefused != 1 || s.Registrations != 4 {
		t.Errorf("stats %+v", s)
	}
}

func TestTrackerToken(t *testing.T) {
	r := newRig(t, Settings{RegisterToken: "s3cret"}, true)
	for _, tok := range []string{"", "wrong"} {
		code, m := r.register("a", "192.0.2.1", "eth0", tok)
		if code != 401 || strings.Contains(fmt.Sprint(m), "s3cret") {
			t.Errorf("token %q: %d %v", tok, code, m)
		}
		if code, _, _ := r.do("GET", "/api/vms", tok, nil); code != 401 {
			t.Errorf("GET /api/vms with token %q: %d", tok, code)
		}
	}
	if code, m := r.register("a", "192.0.2.1", "eth0", "s3cret"); code != 200 {
		t.Errorf("with the token: %d %v", code, m)
	}
}

// TestInstallScript runs the served install.sh into a scratch root: it
// downloads the binary, checks its sha256 and writes the unit; a binary
// that changed after the script was served is refused.
func TestInstallScript(t *testing.T) {
	testenv.Tool(t, "curl", "curl")
	testenv.Tool(t, "sha256sum", "coreutils")
	r := newRig(t, Settings{}, false)
	arch := runtime.GOARCH
	if arch != "amd64" && arch != "arm64" {
		testenv.Need(t, "an amd64 or arm64 machine")
	}
	bin := filepath.Join(r.f.opts.AgentDir, "mb-agent-linux-"+arch)
	agent := []byte("#!/bin/sh\necho fake mb-agent\n")
	if err := os.WriteFile(bin, agent, 0o755); err != nil {
		t.Fatal(err)
	}
	code, _, script := r.do("GET", "/install.sh", "", nil)
	sum := sha256.Sum256(agent)
	if code != 200 || !bytes.Contains(script, []byte(hex.EncodeToString(sum[:]))) {
		t.Fatalf("install.sh: %d\n%s", code, script)
	}
	run := func(args ...string) (string, error) {
		root := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "sh", append([]string{"-s", "--"}, args...)...)
		cmd.Stdin = bytes.NewReader(script)
		cmd.Env = append(os.Environ(), "MB_INSTALL_ROOT="+root)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return string(out), err
		}
		got, err := os.ReadFile(filepath.Join(root, "usr/local/bin/mb-agent"))
		if err != nil || !bytes.Equal(got, agent) {
			t.Fatalf("installed binary: %v", err)
		}
		unit, err := os.ReadFile(filepath.Join(root, "etc/systemd/system/mb-agent-fleet.service"))
		if err != nil {
			t.Fatal(err)
		}
		return string(unit), nil
	}
	unit, err := run("--register", "--interface", "eth0", "--interval", "15")
	if err != nil || !strings.Contains(unit, "ExecStart=/usr/local/bin/mb-agent register --api "+r.srv.URL+" --interface eth0 --interval 15") {
		t.Errorf("register unit: %v\n%s", err, unit)
	}
	unit, err = run("--heartbeat")
	if err != nil || !strings.Contains(unit, "ExecStart=/usr/local/bin/mb-agent heartbeat -b -c /etc/mb-agent/hbc.json 127.0.0.1") {
		t.Errorf("heartbeat unit: %v\n%s", err, unit)
	}
	if out, err := run("--bogus"); err == nil || !strings.Contains(out, "unknown option --bogus") {
		t.Errorf("bad option: %v %s", err, out)
	}
	// The binary changes after the script was served: refused.
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho evil\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := run("--register", "--interface", "eth0"); err == nil || !strings.Contains(out, "checksum mismatch") {
		t.Errorf("changed binary installed: %v %s", err, out)
	}
	if code, _, _ := r.do("GET", "/download/mb-agent-linux-sparc", "", nil); code != 404 {
		t.Errorf("unknown download: %d", code)
	}
}

package service

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/monitor"
)

// client talks to a started service over its TCP listener.
type client struct {
	t          testing.TB
	base       string
	user, pass string
}

func newClient(t testing.TB, s *started) *client {
	t.Helper()
	addr := s.Addr()
	if addr == nil {
		t.Fatal("the service has no TCP listener")
	}
	return &client{t: t, base: "http://" + addr.String()}
}

// do sends a request and returns the status and body.
func (c *client) do(method, path, body string) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.StatusCode, data
}

// json sends a request expecting status want and decodes the reply.
func (c *client) json(method, path, body string, want int, out any) {
	c.t.Helper()
	code, data := c.do(method, path, body)
	if code != want {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, want, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			c.t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
}

// wantError checks an error reply's status and that its message says
// what it should.
func (c *client) wantError(method, path, body string, status int, says ...string) {
	c.t.Helper()
	var e apiError
	c.json(method, path, body, status, &e)
	for _, s := range says {
		if !strings.Contains(e.Error, s) {
			c.t.Errorf("%s %s: error %q does not say %q", method, path, e.Error, s)
		}
	}
}

func apiConfig(hookURL string) string {
	return "listen: 127.0.0.1:0\n" + webhookConfig(hookURL)
}

func TestAPIOverTCP(t *testing.T) {
	hook := newHookServer(t)
	s := start(t, t.TempDir(), apiConfig(hook.URL))
	c := newClient(t, s)
	e := s.Engine()
	observeCPU(t, e, "web-01", 50)
	observeCPU(t, e, "web-01", 85)
	observeCPU(t, e, "db-01", 95)

	var hosts struct{ Hosts []HostJSON }
	c.json("GET", "/api/0/hosts", "", 200, &hosts)
	if len(hosts.Hosts) != 2 || hosts.Hosts[0].Name != "db-01" || hosts.Hosts[0].Reachability != "up" ||
		hosts.Hosts[0].Alerts.Critical != 1 || hosts.Hosts[0].Worst != "CRITICAL" || hosts.Hosts[1].Alerts.Warning != 1 {
		t.Errorf("hosts: %+v", hosts.Hosts)
	}
	var alerts struct{ Alerts []AlertJSON }
	c.json("GET", "/api/0/alerts", "", 200, &alerts)
	if len(alerts.Alerts) != 2 || alerts.Alerts[0].Name != "cpu_monitor.cpu_percent" || alerts.Alerts[0].Level != "CRITICAL" {
		t.Errorf("alerts: %+v", alerts.Alerts)
	}
	var sum struct {
		Critical, Warning, OK int
		Hosts                 map[string]int
	}
	c.json("GET", "/api/0/alert_summary", "", 200, &sum)
	if sum.Critical != 1 || sum.Warning != 1 || sum.Hosts["up"] != 2 {
		t.Errorf("alert_summary: %+v", sum)
	}
	var msgs struct{ Messages []map[string]any }
	c.json("GET", "/api/0/messages", "", 200, &msgs)
	if len(msgs.Messages) == 0 || msgs.Messages[0]["message"] == nil {
		t.Errorf("messages: %+v", msgs)
	}
	var plugins struct {
		Host    string
		Plugins map[string]struct{ Data map[string]any }
	}
	c.json("GET", "/api/0/hosts/web-01/plugins", "", 200, &plugins)
	if plugins.Plugins["cpu_monitor"].Data["cpu_percent"] != 85.0 {
		t.Errorf("plugins: %+v", plugins)
	}
	var plugin struct {
		Samples map[string][]SampleJSON
	}
	c.json("GET", "/api/0/hosts/web-01/plugins/cpu_monitor?limit=1", "", 200, &plugin)
	if got := plugin.Samples["cpu_percent"]; len(got) != 1 || got[0].Value != 85 {
		t.Errorf("plugin samples with limit=1: %+v", plugin)
	}
	c.json("GET", "/api/0/hosts/web-01/plugins/cpu_monitor", "", 200, &plugin)
	if got := plugin.Samples["cpu_percent"]; len(got) != 2 {
		t.Errorf("plugin samples: %+v", plugin)
	}
	var hostAlerts struct{ Alerts []AlertJSON }
	c.json("GET", "/api/0/hosts/web-01/alerts", "", 200, &hostAlerts)
	if len(hostAlerts.Alerts) < 1 {
		t.Errorf("host alerts: %+v", hostAlerts)
	}
	var info struct {
		Host       HostJSON
		Thresholds map[string]map[string]RuleJSON
	}
	c.json("GET", "/api/0/hosts/web-01/info", "", 200, &info)
	if r := info.Thresholds["cpu_monitor"]["cpu_percent"]; r.Critical == nil || *r.Critical != 90 || r.Operator != ">" {
		t.Errorf("info thresholds: %+v", info.Thresholds)
	}
	var hist struct{ Samples []SampleJSON }
	c.json("GET", "/api/0/hosts/web-01/history?field=cpu_monitor.cpu_percent&since=1h", "", 200, &hist)
	if len(hist.Samples) != 2 {
		t.Errorf("history: %+v", hist)
	}

	// Errors: unknown hosts, plugins, fields, endpoints, bodies.
	c.wantError("GET", "/api/0/hosts/nope/info", "", 404, `no such host "nope"`)
	c.wantError("GET", "/api/0/hosts/nope/plugins", "", 404, `"nope"`)
	c.wantError("GET", "/api/0/hosts/web-01/plugins/zfs_monitor", "", 404, "zfs_monitor", "cpu_monitor")
	c.wantError("GET", "/api/0/hosts/web-01/plugins/cpu_monitor?limit=x", "", 400, "limit")
	c.wantError("GET", "/api/0/hosts?bogus=1", "", 400, `unknown query parameter "bogus"`)
	c.wantError("GET", "/api/0/nothing", "", 404, "no such endpoint")
	c.wantError("POST", "/api/0/alerts/acknowledge", `{"host":"web-01","field":"cpu_monitor.cpu_percent","colour":"red"}`, 400, `unknown field "colour"`, "comment")
	c.wantError("POST", "/api/0/alerts/acknowledge", `{"host":"web-01"`, 400, "request body")
	c.wantError("POST", "/api/0/alerts/acknowledge", `{"host":"ghost","field":"cpu_monitor.cpu_percent"}`, 404, `no such host "ghost"`)
	c.wantError("POST", "/api/0/alerts/acknowledge", `{"host":"web-01","field":"memory_monitor.percent"}`, 404, "cpu_monitor.cpu_percent")
	c.wantError("POST", "/api/0/alerts/acknowledge", `{"host":"web-01","field":"cpu_monitor.cpu_percent","for":"soon"}`, 400, `"for"`)
	c.wantError("POST", "/api/0/silences", `{"comment":"all","for":"1h"}`, 400, "every alert")
	c.wantError("POST", "/api/0/silences", `{"host":"web-01"}`, 400, "missing end")
	c.wantError("DELETE", "/api/0/silences/zzz", "", 404, `no silence "zzz"`)
	c.wantError("POST", "/api/0/notify/test", `{"channel":"pager"}`, 404, "pager", "hook")

	// Acknowledge: recorded with who made it (the local user over a
	// listener without users), its comment and expiry.
	var acked struct{ Alert AlertJSON }
	c.json("POST", "/api/0/alerts/acknowledge", `{"host":"db-01","field":"cpu_monitor.cpu_percent","for":"4h","comment":"on it"}`, 200, &acked)
	me, _ := user.Current()
	if a := acked.Alert.Ack; a == nil || a.By != me.Username || a.Comment != "on it" || !a.Active || a.Until.Sub(a.At) > 4*time.Hour || a.Until.Sub(a.At) < 4*time.Hour-time.Minute {
		t.Errorf("acknowledged alert: %+v", acked.Alert.Ack)
	}
	c.json("POST", "/api/0/alerts/unacknowledge", `{"host":"db-01","field":"cpu_monitor.cpu_percent"}`, 200, &acked)
	if acked.Alert.Ack != nil {
		t.Errorf("still acknowledged: %+v", acked.Alert.Ack)
	}

	// Silences.
	var sil struct{ Silence SilenceJSON }
	c.json("POST", "/api/0/silences", `{"host":"web-*","for":"2h","comment":"kernel upgrade"}`, 201, &sil)
	if sil.Silence.ID == "" || !sil.Silence.Active || sil.Silence.By != me.Username {
		t.Errorf("silence: %+v", sil.Silence)
	}
	var sils struct{ Silences []SilenceJSON }
	c.json("GET", "/api/0/silences", "", 200, &sils)
	if len(sils.Silences) != 1 || sils.Silences[0].Comment != "kernel upgrade" {
		t.Errorf("silences: %+v", sils)
	}
	c.json("GET", "/api/0/alerts", "", 200, &alerts)
	for _, a := range alerts.Alerts {
		if a.Host == "web-01" && !a.Silenced {
			t.Errorf("web-01's alert is not silenced: %+v", a)
		}
	}
	c.json("DELETE", "/api/0/silences/"+sil.Silence.ID, "", 200, nil)
	c.json("GET", "/api/0/silences", "", 200, &sils)
	if len(sils.Silences) != 0 {
		t.Errorf("silence not deleted: %+v", sils)
	}

	// Notification test through the webhook channel.
	var tr struct {
		Results []struct {
			Channel string
			OK      bool
			Error   string
		}
	}
	c.json("POST", "/api/0/notify/test", "", 200, &tr)
	if len(tr.Results) != 1 || tr.Results[0].Channel != "hook" || !tr.Results[0].OK {
		t.Errorf("notify test: %+v", tr)
	}
	var notes struct{ Notifications []NotificationJSON }
	waitFor(t, "two sent notifications", func() bool {
		c.json("GET", "/api/0/notifications?status=sent", "", 200, &notes)
		return len(notes.Notifications) == 2
	})
}

// TestReloadBrokenFileKeepsOld: a reload with a broken file is refused
// with the reason, and the old thresholds stay in force; a good file
// then takes effect.
func TestReloadBrokenFileKeepsOld(t *testing.T) {
	hook := newHookServer(t)
	dir := t.TempDir()
	s := start(t, dir, apiConfig(hook.URL))
	c := newClient(t, s)
	for _, bad := range []struct{ text, says string }{
		{"thresholds: [oops\n", "yaml"},
		{"notification_channels:\n  x:\n    type: carrier_pigeon\n", "carrier_pigeon"},
		{"listen: 0.0.0.0:0\n", "add users"},
		{"interval: -5\n", "interval"},
	} {
		if err := os.WriteFile(s.path, []byte(bad.text), 0o600); err != nil {
			t.Fatal(err)
		}
		c.wantError("POST", "/api/0/reload", "", 400, "old configuration stays in force", bad.says)
		if err := s.Reload(""); err == nil {
			t.Errorf("Reload accepted %q", bad.text)
		}
	}
	observeCPU(t, s.Engine(), "h", 85) // the old rules: warning at 80
	if a := s.Engine().Alerts(monitor.AlertFilter{Host: "h"}); len(a) != 1 || a[0].Level.String() != "WARNING" {
		t.Fatalf("old thresholds not in force after refused reloads: %+v", a)
	}
	good := "listen: 127.0.0.1:0\n" + webhookConfig(hook.URL)
	good = strings.Replace(good, "warning: 80", "warning: 70", 1)
	if err := os.WriteFile(s.path, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	// The listener address stays the same string, so the listener stays.
	c.json("POST", "/api/0/reload", "", 200, nil)
	var info struct {
		Thresholds map[string]map[string]RuleJSON
	}
	c.json("GET", "/api/0/hosts/h/info", "", 200, &info)
	if w := info.Thresholds["cpu_monitor"]["cpu_percent"].Warning; w == nil || *w != 70 {
		t.Errorf("new warning threshold not in force: %+v", info.Thresholds)
	}
}

// TestNonLoopbackListenNeedsUsers: a non-loopback listen without users is
// refused at start and at reload, with the fix in the message.
func TestNonLoopbackListenNeedsUsers(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, "listen: 0.0.0.0:0\n")
	_, err := New(t.Context(), Options{ConfigPath: path, StateDir: dir + "/state", Logger: quietLogger()})
	if err == nil || !strings.Contains(err.Error(), "add users") || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("New with listen 0.0.0.0 and no users: %v", err)
	}
}

// TestBasicAuth: with users, the listener wants a user's password, even on
// loopback; the user is who acknowledges.
func TestBasicAuth(t *testing.T) {
	hook := newHookServer(t)
	// alice's password is "correct horse" (a hash made by Python's
	// hashlib, as hbd passwd makes them).
	cfg := apiConfig(hook.URL) + `
users:
  alice:
    admin: true
    password: "pbkdf2:sha256:260000$Zx9QkL2mN4pR7sT1$44e399779d3cd4d34a539e8c23880ebafbe3946bdaaa976a4fb6479cd339db90"
    notification_channels: [hook]
`
	s := start(t, t.TempDir(), cfg)
	observeCPU(t, s.Engine(), "db-01", 95)
	c := newClient(t, s)
	for _, creds := range [][2]string{{"", ""}, {"alice", "wrong"}, {"bob", "correct horse"}} {
		c.user, c.pass = creds[0], creds[1]
		code, body := c.do("GET", "/api/0/hosts", "")
		if code != http.StatusUnauthorized || !bytes.Contains(body, []byte("authentication required")) {
			t.Errorf("%q: status %d %s, want 401", creds, code, body)
		}
		if code, _ := c.do("GET", "/metrics", ""); code != http.StatusUnauthorized {
			t.Errorf("%q: /metrics status %d, want 401", creds, code)
		}
	}
	c.user, c.pass = "alice", "correct horse"
	var acked struct{ Alert AlertJSON }
	c.json("POST", "/api/0/alerts/acknowledge", `{"host":"db-01","field":"cpu_monitor.cpu_percent"}`, 200, &acked)
	if acked.Alert.Ack == nil || acked.Alert.Ack.By != "alice" {
		t.Errorf("acknowledged by %+v, want alice", acked.Alert.Ack)
	}
	// A reload that removes the users of a non-loopback listener is
	// refused.
	noUsers := strings.Replace(cfg[:strings.Index(cfg, "users:")], "127.0.0.1:0", "0.0.0.0:0", 1)
	if err := os.WriteFile(s.path, []byte(noUsers), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(""); err == nil || !strings.Contains(err.Error(), "add users") {
		t.Errorf("reload to 0.0.0.0 without users: %v", err)
	}
}

// TestReloadMovesListener: a reload with a new listen address serves on
// it and closes the old one; a reload to an address in use is refused
// and the listener stays.
func TestReloadMovesListener(t *testing.T) {
	hook := newHookServer(t)
	s := start(t, t.TempDir(), apiConfig(hook.URL))
	old := s.Addr().String()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := func(addr string) string { return strings.Replace(apiConfig(hook.URL), "127.0.0.1:0", addr, 1) }
	if err := os.WriteFile(s.path, []byte(cfg(busy.Addr().String())), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(""); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("reload to a busy port: %v", err)
	}
	if s.Addr().String() != old {
		t.Fatalf("listener moved to %s after a refused reload", s.Addr())
	}
	newAddr := freeAddr(t)
	if err := os.WriteFile(s.path, []byte(cfg(newAddr)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(""); err != nil {
		t.Fatal(err)
	}
	if s.Addr().String() != newAddr {
		t.Fatalf("listener at %s, want %s", s.Addr(), newAddr)
	}
	c := newClient(t, s)
	c.json("GET", "/api/0/hosts", "", 200, nil)
	if conn, err := net.DialTimeout("tcp", old, time.Second); err == nil {
		conn.Close()
		t.Errorf("the old listener %s still accepts", old)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

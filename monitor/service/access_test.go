package service

import (
	"net/http"
	"strings"
	"testing"
)

// rolesConfig: alice is an admin; bob monitors web-01; carol manages
// db-01. Their passwords are a-pass, b-pass and c-pass.
const rolesConfig = `
users:
  alice:
    admin: true
    password: "pbkdf2:sha256:1000$salice$82e44c0fd3f34142bbbca436a3c2b6e0a577ec697d8003862948f2994fa38092"
  bob:
    password: "pbkdf2:sha256:1000$sbob$956441ab8bac2a2c25d55c34c82f0853403e6912f5f834836d7ffa8415feba24"
  carol:
    password: "pbkdf2:sha256:1000$scarol$847b6d4be4e3bb6b691d7165ed7169e538b69f123847fc3191177f9d3318a639"
hosts:
  web-01:
    owner: alice
    monitors: [bob]
  db-01:
    owner: alice
    managers: [carol]
`

// TestRolesOnTheListener: hbd's roles: a user who is not an admin sees only
// the hosts where they have a role, changes alerts only as owner or
// manager, and cannot reload, test channels or read /metrics.
func TestRolesOnTheListener(t *testing.T) {
	hook := newHookServer(t)
	s := start(t, t.TempDir(), apiConfig(hook.URL)+rolesConfig)
	for _, h := range []string{"web-01", "db-01", "stray"} {
		observeCPU(t, s.Engine(), h, 95)
	}
	as := func(user string) *client {
		c := newClient(t, s)
		c.user, c.pass = user, user[:1]+"-pass"
		return c
	}
	alice, bob, carol := as("alice"), as("bob"), as("carol")

	names := func(c *client) string {
		var hosts struct{ Hosts []HostJSON }
		c.json("GET", "/api/0/hosts", "", 200, &hosts)
		var n []string
		for _, h := range hosts.Hosts {
			n = append(n, h.Name)
		}
		return strings.Join(n, ",")
	}
	if got := names(alice); got != "db-01,stray,web-01" {
		t.Errorf("alice (admin) sees %s", got)
	}
	if got := names(bob); got != "web-01" {
		t.Errorf("bob sees %s, want web-01", got)
	}
	if got := names(carol); got != "db-01" {
		t.Errorf("carol sees %s, want db-01", got)
	}
	var alerts struct{ Alerts []AlertJSON }
	bob.json("GET", "/api/0/alerts", "", 200, &alerts)
	if len(alerts.Alerts) != 1 || alerts.Alerts[0].Host != "web-01" {
		t.Errorf("bob's alerts: %+v", alerts.Alerts)
	}
	var sum struct {
		Critical int
		Hosts    map[string]int
	}
	bob.json("GET", "/api/0/alert_summary", "", 200, &sum)
	if sum.Critical != 1 || sum.Hosts["up"] != 1 {
		t.Errorf("bob's summary: %+v", sum)
	}
	var msgs struct {
		Messages []struct{ Message map[string]any }
	}
	bob.json("GET", "/api/0/messages", "", 200, &msgs)
	for _, m := range msgs.Messages {
		if messageHost(m.Message) != "web-01" {
			t.Errorf("bob sees a message about another host: %v", m.Message)
		}
	}
	bob.wantError("GET", "/api/0/hosts/db-01/info", "", 404, `no such host "db-01"`)
	bob.json("GET", "/api/0/hosts/web-01/info", "", 200, nil)

	// Changing alerts: owner or manager.
	bob.wantError("POST", "/api/0/alerts/acknowledge", `{"host":"web-01","field":"cpu_monitor.cpu_percent"}`, 403, "owner or manager", "bob")
	bob.wantError("POST", "/api/0/alerts/acknowledge", `{"host":"db-01","field":"cpu_monitor.cpu_percent"}`, 404, "db-01")
	var acked struct{ Alert AlertJSON }
	carol.json("POST", "/api/0/alerts/acknowledge", `{"host":"db-01","field":"cpu_monitor.cpu_percent"}`, 200, &acked)
	if acked.Alert.Ack == nil || acked.Alert.Ack.By != "carol" {
		t.Errorf("carol's acknowledgement: %+v", acked.Alert.Ack)
	}
	carol.wantError("POST", "/api/0/silences", `{"host":"*","for":"1h"}`, 403, "admin")
	carol.wantError("POST", "/api/0/silences", `{"host":"web-01","for":"1h"}`, 403)
	var sil struct{ Silence SilenceJSON }
	carol.json("POST", "/api/0/silences", `{"host":"db-01","for":"1h"}`, 201, &sil)
	var sils struct{ Silences []SilenceJSON }
	bob.json("GET", "/api/0/silences", "", 200, &sils)
	if len(sils.Silences) != 0 {
		t.Errorf("bob sees carol's silence of db-01: %+v", sils)
	}
	alice.json("POST", "/api/0/silences", `{"host":"web-*","for":"1h"}`, 201, nil)
	carol.wantError("DELETE", "/api/0/silences/"+sils0(t, alice), "", 403, "admin")
	carol.json("DELETE", "/api/0/silences/"+sil.Silence.ID, "", 200, nil)

	// Admin only.
	for _, c := range []*client{bob, carol} {
		c.wantError("POST", "/api/0/reload", "", 403, "admin")
		c.wantError("POST", "/api/0/notify/test", "", 403, "admin")
		if code, _ := c.do("GET", "/metrics", ""); code != http.StatusForbidden {
			t.Errorf("%s: /metrics status %d, want 403", c.user, code)
		}
	}
	alice.json("POST", "/api/0/reload", "", 200, nil)
	if code, _ := alice.do("GET", "/metrics", ""); code != 200 {
		t.Errorf("alice: /metrics status %d", code)
	}
}

// sils0 is the ID of the first silence alice sees.
func sils0(t *testing.T, c *client) string {
	t.Helper()
	var sils struct{ Silences []SilenceJSON }
	c.json("GET", "/api/0/silences", "", 200, &sils)
	for _, x := range sils.Silences {
		if x.Host == "web-*" {
			return x.ID
		}
	}
	t.Fatal("no web-* silence")
	return ""
}

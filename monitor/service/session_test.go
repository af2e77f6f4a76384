package service

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/mbvm/mb/monitor/auth"
)

// hashFor makes a cheap password hash for tests.
func hashFor(t testing.TB, pw string) string {
	t.Helper()
	h, err := auth.Make(pw, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// usersConfig has an admin (alice), a monitor of web-01 only (mona) and
// a manager of web-01 (manny); db-01 belongs to alice.
func usersConfig(t testing.TB, hookURL string) string {
	return apiConfig(hookURL) + fmt.Sprintf(`
users:
  alice: {admin: true, password: %q}
  mona: {password: %q}
  manny: {password: %q}
default_owner: alice
hosts:
  web-01: {owner: alice, managers: [manny], monitors: [mona]}
  db-01: {owner: alice}
`, hashFor(t, "alice-pw"), hashFor(t, "mona-pw"), hashFor(t, "manny-pw"))
}

// browser is an HTTP client with a session, as a page's scripts would be.
type browser struct {
	t     testing.TB
	base  string
	token string
	csrf  string
	hc    *http.Client
}

func newBrowser(t testing.TB, s *started) *browser {
	return &browser{t: t, base: "http://" + s.Addr().String(), hc: &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// do sends a request with the session cookie (when signed in) and the
// given headers.
func (b *browser) do(method, path, body string, hdr ...string) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(method, b.base+path, strings.NewReader(body))
	if err != nil {
		b.t.Fatal(err)
	}
	if b.token != "" {
		req.AddCookie(&http.Cookie{Name: SessionCookie, Value: b.token})
	}
	if body != "" && !strings.Contains(strings.Join(hdr, " "), "Content-Type") {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, string(data)
}

func (b *browser) login(user, pw string) *http.Response {
	b.t.Helper()
	resp, body := b.do("POST", "/api/0/auth/login", fmt.Sprintf(`{"username":%q,"password":%q}`, user, pw))
	if resp.StatusCode != 200 {
		b.t.Fatalf("login %s: %d %s", user, resp.StatusCode, body)
	}
	var out struct {
		Token string `json:"token"`
		CSRF  string `json:"csrf_token"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		b.t.Fatal(err)
	}
	b.token, b.csrf = out.Token, out.CSRF
	return resp
}

func TestSessionLoginAndCookie(t *testing.T) {
	hook := newHookServer(t)
	s := start(t, t.TempDir(), usersConfig(t, hook.URL))
	observeCPU(t, s.Engine(), "db-01", 95)
	b := newBrowser(t, s)

	// Without a session: the API answers 401, a page redirects to /login.
	if resp, _ := b.do("GET", "/api/0/hosts", ""); resp.StatusCode != 401 {
		t.Fatalf("/api/0/hosts without a session: %d", resp.StatusCode)
	}
	if resp, _ := b.do("GET", "/live", ""); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login?next=") {
		t.Fatalf("/live without a session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, body := b.do("GET", "/login", ""); resp.StatusCode != 200 || !strings.Contains(body, `name="password"`) {
		t.Fatalf("/login: %d", resp.StatusCode)
	}

	resp := b.login("alice", "alice-pw")
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == SessionCookie {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Secure || cookie.Value != b.token {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, not Secure without TLS", cookie)
	}
	if len(b.token) < 43 {
		t.Fatalf("token %q shorter than 256 bits", b.token)
	}
	if resp, body := b.do("GET", "/api/0/users/me", ""); resp.StatusCode != 200 || !strings.Contains(body, `"alice"`) || !strings.Contains(body, b.csrf) {
		t.Fatalf("users/me: %d %s", resp.StatusCode, body)
	}
	if resp, body := b.do("GET", "/api/0/users", ""); resp.StatusCode != 200 || strings.Contains(body, "pbkdf2") || !strings.Contains(body, "mona") {
		t.Fatalf("users: %d %s", resp.StatusCode, body)
	}
	resp, body := b.do("GET", "/live", "")
	if resp.StatusCode != 200 || !strings.Contains(body, "db-01") {
		t.Fatalf("/live: %d %s", resp.StatusCode, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe-inline") {
		t.Fatalf("CSP %q", csp)
	}

	// A change by cookie needs the CSRF token; by Bearer it does not.
	ack := `{"host":"db-01","field":"cpu_monitor.cpu_percent","comment":"looking"}`
	if resp, body := b.do("POST", "/api/0/alerts/acknowledge", ack); resp.StatusCode != 403 || !strings.Contains(body, "CSRF") {
		t.Fatalf("ack without CSRF: %d %s", resp.StatusCode, body)
	}
	if resp, body := b.do("POST", "/api/0/alerts/acknowledge", ack, CSRFHeader, "wrong"); resp.StatusCode != 403 {
		t.Fatalf("ack with a wrong CSRF token: %d %s", resp.StatusCode, body)
	}
	if resp, body := b.do("POST", "/api/0/alerts/acknowledge", ack, CSRFHeader, b.csrf); resp.StatusCode != 200 {
		t.Fatalf("ack with CSRF: %d %s", resp.StatusCode, body)
	}
	bearer := &browser{t: t, base: b.base, hc: b.hc}
	if resp, body := bearer.do("POST", "/api/0/alerts/unacknowledge", `{"host":"db-01","field":"cpu_monitor.cpu_percent"}`, "Authorization", "Bearer "+b.token); resp.StatusCode != 200 {
		t.Fatalf("unack by Bearer: %d %s", resp.StatusCode, body)
	}
	// A cross-site form post is refused by its Origin.
	if resp, _ := b.do("POST", "/api/0/alerts/acknowledge", ack, CSRFHeader, b.csrf, "Origin", "http://evil.example"); resp.StatusCode != 403 {
		t.Fatalf("cross-origin post: %d", resp.StatusCode)
	}

	// Both changes are in the audit log, with who made them.
	audit := s.site.audit.list()
	if len(audit) != 2 || audit[0].User != "alice" || !strings.Contains(audit[0].Action, "acknowledge") || audit[0].Target != "db-01 cpu_monitor.cpu_percent" || !strings.Contains(audit[0].Info, "looking") {
		t.Fatalf("audit %+v", audit)
	}
	if _, body := b.do("GET", "/settings", ""); !strings.Contains(body, "alerts/unacknowledge") {
		t.Error("/settings does not show the audit log")
	}

	// The configuration comes redacted; access names the roles.
	if resp, body := b.do("GET", "/api/0/config", ""); resp.StatusCode != 200 || strings.Contains(body, "pbkdf2") || !strings.Contains(body, "<redacted>") || !strings.Contains(body, "mona") {
		t.Fatalf("config: %d\n%s", resp.StatusCode, body)
	}
	if resp, body := b.do("GET", "/api/0/hosts/db-01/access", ""); resp.StatusCode != 200 || !strings.Contains(body, `"owner": "alice"`) {
		t.Fatalf("access: %d %s", resp.StatusCode, body)
	}

	// Logout ends the session.
	if resp, _ := b.do("POST", "/api/0/auth/logout", "", CSRFHeader, b.csrf); resp.StatusCode != 200 {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if resp, _ := b.do("GET", "/api/0/hosts", ""); resp.StatusCode != 401 {
		t.Fatalf("after logout: %d", resp.StatusCode)
	}
}

func TestSessionExpiresAndPasswordChange(t *testing.T) {
	hook := newHookServer(t)
	s := start(t, t.TempDir(), usersConfig(t, hook.URL))
	var now time.Time
	s.site.sessions.Now = func() time.Time {
		if now.IsZero() {
			return time.Now()
		}
		return now
	}
	b := newBrowser(t, s)
	b.login("alice", "alice-pw")
	if resp, _ := b.do("GET", "/api/0/hosts", ""); resp.StatusCode != 200 {
		t.Fatalf("fresh session: %d", resp.StatusCode)
	}
	now = time.Now().Add(auth.DefaultSessionTTL + time.Minute)
	if resp, _ := b.do("GET", "/api/0/hosts", ""); resp.StatusCode != 401 {
		t.Fatalf("expired session: %d", resp.StatusCode)
	}
	now = time.Time{}

	// A changed password signs the user out; other users stay.
	b.login("alice", "alice-pw")
	m := newBrowser(t, s)
	m.login("mona", "mona-pw")
	cfg := usersConfig(t, hook.URL)
	data, err := os.ReadFile(s.path)
	if err != nil {
		t.Fatal(err)
	}
	old := string(data)
	i := strings.Index(old, "alice: {admin: true, password: ")
	j := strings.Index(old[i:], "}\n")
	newer := old[:i] + fmt.Sprintf("alice: {admin: true, password: %q", hashFor(t, "new-pw")) + old[i+j:]
	_ = cfg
	if err := os.WriteFile(s.path, []byte(newer), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(""); err != nil {
		t.Fatal(err)
	}
	if resp, _ := b.do("GET", "/api/0/hosts", ""); resp.StatusCode != 401 {
		t.Fatalf("session after a password change: %d", resp.StatusCode)
	}
	if resp, _ := m.do("GET", "/api/0/hosts", ""); resp.StatusCode != 200 {
		t.Fatalf("another user's session after alice's password change: %d", resp.StatusCode)
	}
}

func TestLoginRefusals(t *testing.T) {
	hook := newHookServer(t)
	s := start(t, t.TempDir(), usersConfig(t, hook.URL))
	b := newBrowser(t, s)
	for _, body := range []string{`{"username":"alice","password":"nope"}`, `{"username":"nobody","password":"alice-pw"}`} {
		resp, out := b.do("POST", "/api/0/auth/login", body)
		if resp.StatusCode != 401 || !strings.Contains(out, "wrong user name or password") {
			t.Fatalf("%s: %d %s", body, resp.StatusCode, out)
		}
	}
	// The form says the same and keeps no password.
	resp, out := b.do("POST", "/login", url.Values{"username": {"alice"}, "password": {"nope"}}.Encode(), "Content-Type", "application/x-www-form-urlencoded")
	if resp.StatusCode != 401 || !strings.Contains(out, "wrong user name or password") || strings.Contains(out, "nope") {
		t.Fatalf("form login: %d", resp.StatusCode)
	}
	// Five failures for alice lock her name, even with the right password.
	for i := 0; i < 3; i++ {
		b.do("POST", "/api/0/auth/login", `{"username":"alice","password":"nope"}`)
	}
	resp, out = b.do("POST", "/api/0/auth/login", `{"username":"alice","password":"alice-pw"}`)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("after 5 failures: %d %s", resp.StatusCode, out)
	}
}

func TestRolesOnPagesAndAPI(t *testing.T) {
	hook := newHookServer(t)
	s := start(t, t.TempDir(), usersConfig(t, hook.URL))
	observeCPU(t, s.Engine(), "web-01", 95)
	observeCPU(t, s.Engine(), "db-01", 95)
	m := newBrowser(t, s)
	m.login("mona", "mona-pw")
	if _, body := m.do("GET", "/live", ""); !strings.Contains(body, "web-01") || strings.Contains(body, "db-01") {
		t.Fatalf("mona's /live shows the wrong hosts:\n%s", body)
	}
	if resp, _ := m.do("GET", "/hosts/db-01", ""); resp.StatusCode != 404 {
		t.Fatalf("mona's /hosts/db-01: %d, want 404", resp.StatusCode)
	}
	if resp, _ := m.do("GET", "/api/0/hosts/db-01/info", ""); resp.StatusCode != 404 {
		t.Fatalf("mona's API db-01: %d, want 404", resp.StatusCode)
	}
	if resp, _ := m.do("GET", "/hosts/web-01", ""); resp.StatusCode != 200 {
		t.Fatalf("mona's /hosts/web-01: %d", resp.StatusCode)
	}
	if resp, _ := m.do("POST", "/api/0/alerts/acknowledge", `{"host":"web-01","field":"cpu_monitor.cpu_percent"}`, CSRFHeader, m.csrf); resp.StatusCode != 403 {
		t.Fatalf("mona acknowledging: %d, want 403", resp.StatusCode)
	}
	if resp, _ := m.do("POST", "/api/0/hosts/web-01/vm/start", "", CSRFHeader, m.csrf); resp.StatusCode != 403 {
		t.Fatalf("mona starting web-01: %d, want 403", resp.StatusCode)
	}
	if resp, _ := m.do("POST", "/api/0/hosts/db-01/vm/start", "", CSRFHeader, m.csrf); resp.StatusCode != 404 {
		t.Fatalf("mona starting db-01: %d, want 404", resp.StatusCode)
	}
	if resp, _ := m.do("GET", "/api/0/config", ""); resp.StatusCode != 403 {
		t.Fatalf("mona's config: %d, want 403", resp.StatusCode)
	}
	if resp, body := m.do("GET", "/api/0/hosts/web-01/access", ""); resp.StatusCode != 200 || !strings.Contains(body, `"your_role": "monitor"`) {
		t.Fatalf("mona's access: %d %s", resp.StatusCode, body)
	}
	if resp, _ := m.do("GET", "/api/0/hosts/db-01/access", ""); resp.StatusCode != 404 {
		t.Fatalf("mona's access to db-01: %d, want 404", resp.StatusCode)
	}
	if resp, _ := m.do("GET", "/settings", ""); resp.StatusCode != 403 {
		t.Fatalf("mona's /settings: %d, want 403", resp.StatusCode)
	}
	// The /alerts page offers her no actions; manny may act through it.
	if _, body := m.do("GET", "/alerts", ""); !strings.Contains(body, "web-01") || strings.Contains(body, "db-01") || strings.Contains(body, "Acknowledge</button>") {
		t.Fatalf("mona's /alerts:\n%s", body)
	}
	mg := newBrowser(t, s)
	mg.login("manny", "manny-pw")
	form := url.Values{"csrf_token": {mg.csrf}, "host": {"web-01"}, "field": {"cpu_monitor.cpu_percent"}, "for": {"1h"}, "comment": {"on it"}}
	resp, body := mg.do("POST", "/alerts/ack", form.Encode(), "Content-Type", "application/x-www-form-urlencoded")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("manny's ack form: %d %s", resp.StatusCode, body)
	}
	if _, body := mg.do("GET", "/alerts", ""); !strings.Contains(body, "Acknowledged by manny") || !strings.Contains(body, "on it") {
		t.Fatalf("after the ack:\n%s", body)
	}
	form.Del("csrf_token")
	if resp, _ := mg.do("POST", "/alerts/unack", form.Encode(), "Content-Type", "application/x-www-form-urlencoded"); resp.StatusCode != 403 {
		t.Fatalf("form without CSRF: %d", resp.StatusCode)
	}
}

func TestWebSocketFeed(t *testing.T) {
	hook := newHookServer(t)
	s := start(t, t.TempDir(), usersConfig(t, hook.URL))
	observeCPU(t, s.Engine(), "web-01", 10)
	observeCPU(t, s.Engine(), "db-01", 10)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	wsURL := "ws://" + s.Addr().String() + "/ws"
	// Without a session: refused before the upgrade.
	_, resp, err := websocket.Dial(ctx, wsURL, nil)
	if err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("WebSocket without a session: %v %v", err, resp)
	}
	m := newBrowser(t, s)
	m.login("mona", "mona-pw")
	hdr := http.Header{"Cookie": {SessionCookie + "=" + m.token}}
	// A foreign Origin is refused.
	_, resp, err = websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPHeader: http.Header{"Cookie": hdr["Cookie"], "Origin": {"http://evil.example"}}})
	if err == nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("WebSocket from a foreign origin: %v %v", err, resp)
	}
	conn, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPHeader: hdr})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	read := func() Frame {
		t.Helper()
		_, data, err := conn.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var f Frame
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatal(err)
		}
		return f
	}
	snap := read()
	if len(snap.Hosts) != 1 || snap.Hosts[0].Name != "web-01" {
		t.Fatalf("snapshot %+v: want web-01 only", snap)
	}
	// A change to db-01 (not hers) is not sent; one to web-01 is.
	observeCPU(t, s.Engine(), "db-01", 95)
	observeCPU(t, s.Engine(), "web-01", 95)
	for {
		f := read()
		for _, h := range f.Hosts {
			if h.Name != "web-01" {
				t.Fatalf("mona got %s", h.Name)
			}
		}
		for _, x := range f.Messages {
			if x.Host != "web-01" {
				t.Fatalf("mona got a message about %q", x.Host)
			}
		}
		if len(f.Hosts) == 1 && f.Hosts[0].Worst == "CRITICAL" {
			break
		}
	}
}

func TestConfigAPIBackupAndRollback(t *testing.T) {
	hook := newHookServer(t)
	s := start(t, t.TempDir(), usersConfig(t, hook.URL))
	b := newBrowser(t, s)
	b.login("alice", "alice-pw")
	orig, err := os.ReadFile(s.path)
	if err != nil {
		t.Fatal(err)
	}
	// The redacted form, a bad file and a non-admin are refused, and
	// nothing changes.
	_, red := b.do("GET", "/api/0/config", "")
	for _, body := range []string{red, "interval: [\n"} {
		if resp, out := b.do("POST", "/api/0/config", body, CSRFHeader, b.csrf, "Content-Type", "application/yaml"); resp.StatusCode != 400 {
			t.Fatalf("POST config: %d %s", resp.StatusCode, out)
		}
	}
	m := newBrowser(t, s)
	m.login("mona", "mona-pw")
	if resp, _ := m.do("POST", "/api/0/config", string(orig), CSRFHeader, m.csrf, "Content-Type", "application/yaml"); resp.StatusCode != 403 {
		t.Fatalf("mona's POST config: %d", resp.StatusCode)
	}
	if now, _ := os.ReadFile(s.path); string(now) != string(orig) {
		t.Fatal("a refused POST changed the file")
	}
	changed := strings.Replace(string(orig), "cpu_percent: {warning: 80, critical: 90}", "cpu_percent: {warning: 70, critical: 90}", 1)
	resp, out := b.do("POST", "/api/0/config", changed, CSRFHeader, b.csrf, "Content-Type", "application/yaml")
	if resp.StatusCode != 200 {
		t.Fatalf("POST config: %d %s", resp.StatusCode, out)
	}
	if rule := s.Config().Thresholds["cpu_monitor"]["cpu_percent"]; rule.Warning == nil || *rule.Warning != 70 {
		t.Fatalf("the new thresholds are not in force: %+v", rule)
	}
	var list struct {
		Backups []struct{ Name string } `json:"backups"`
	}
	_, out = b.do("GET", "/api/0/config/backups", "")
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Backups) != 1 {
		t.Fatalf("backups: %s %v", out, err)
	}
	if resp, out := b.do("POST", "/api/0/config/rollback", fmt.Sprintf(`{"backup":%q}`, list.Backups[0].Name), CSRFHeader, b.csrf); resp.StatusCode != 200 {
		t.Fatalf("rollback: %d %s", resp.StatusCode, out)
	}
	if now, _ := os.ReadFile(s.path); string(now) != string(orig) {
		t.Fatal("the rollback did not restore the file")
	}
	if rule := s.Config().Thresholds["cpu_monitor"]["cpu_percent"]; rule.Warning == nil || *rule.Warning != 80 {
		t.Fatalf("the rolled-back thresholds are not in force: %+v", rule)
	}
	if resp, _ := b.do("POST", "/api/0/config/rollback", `{"backup":"../monitor.yaml"}`, CSRFHeader, b.csrf); resp.StatusCode != 400 {
		t.Fatalf("rollback to a path: %d", resp.StatusCode)
	}
	audit := s.site.audit.list()
	if len(audit) < 2 || audit[len(audit)-1].Action != "config rollback" || audit[len(audit)-2].Action != "config change" {
		t.Fatalf("audit %+v", audit)
	}
}

func TestNotificationChannelsAPI(t *testing.T) {
	hook := newHookServer(t)
	s := start(t, t.TempDir(), usersConfig(t, hook.URL))
	b := newBrowser(t, s)
	b.login("alice", "alice-pw")
	add := fmt.Sprintf(`{"name":"ops","channel":{"type":"webhook","url":%q}}`, hook.URL+"/ops")
	if resp, out := b.do("POST", "/api/0/notification_channels", add, CSRFHeader, b.csrf); resp.StatusCode != 200 {
		t.Fatalf("add: %d %s", resp.StatusCode, out)
	}
	if _, ok := s.cur.Load().channels["ops"]; !ok {
		t.Fatal("the new channel is not in force")
	}
	_, out := b.do("GET", "/api/0/notification_channels", "")
	if !strings.Contains(out, `"ops"`) || !strings.Contains(out, `"hook"`) {
		t.Fatalf("list: %s", out)
	}
	if resp, out := b.do("PUT", "/api/0/notification_channels/ops", `{"type":"nonsense"}`, CSRFHeader, b.csrf); resp.StatusCode != 400 {
		t.Fatalf("bad channel: %d %s", resp.StatusCode, out)
	}
	if resp, out := b.do("DELETE", "/api/0/notification_channels/ops", "", CSRFHeader, b.csrf); resp.StatusCode != 200 {
		t.Fatalf("delete: %d %s", resp.StatusCode, out)
	}
	if _, ok := s.cur.Load().channels["ops"]; ok {
		t.Fatal("the deleted channel is still in force")
	}
	if resp, _ := b.do("DELETE", "/api/0/notification_channels/ops", "", CSRFHeader, b.csrf); resp.StatusCode != 404 {
		t.Fatalf("delete again: %d", resp.StatusCode)
	}
	m := newBrowser(t, s)
	m.login("mona", "mona-pw")
	if resp, _ := m.do("POST", "/api/0/notification_channels", add, CSRFHeader, m.csrf); resp.StatusCode != 403 {
		t.Fatalf("mona adding a channel: %d", resp.StatusCode)
	}
}

package service

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/monitor/store"
)

// TestSecretsNeverInReplies configures every channel type with secrets,
// points them at a server that echoes each request back in its error
// reply, makes notifications fail through all of them, and then reads
// every endpoint: no reply, log line or journal line contains a secret.
func TestSecretsNeverInReplies(t *testing.T) {
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, "refused %s %s headers %v body %s", r.Method, r.URL.String(), r.Header, body)
	}))
	defer echo.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	smtpPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()

	secrets := []string{
		"hmac-KEY-7f3a", "pushoverTOKEN9", "pushoverUSER9", "smtpPASS-41", "matrixPASS-77", "matrixTOKEN-78",
		"slack-PATH-secret", "mattermost-PATH-secret", "voipPASS-55", "amPASS-66",
		// alice's password hash, and the file-held token.
		"44e399779d3cd4d34a539e8c23880ebafbe3946bdaaa976a4fb6479cd339db90", "fileTOKEN-99",
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pushover.token"), []byte("fileTOKEN-99\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	u := echo.URL
	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
interval: 1
grace: 0
notification_channels:
  hook:     {type: webhook, url: %[1]s/hook, hmac_key: hmac-KEY-7f3a}
  push:     {type: pushover, token: pushoverTOKEN9, user: pushoverUSER9, api_url: %[1]s/pushover}
  push2:    {type: pushover, token_file: pushover.token, user: pushoverUSER9, api_url: %[1]s/pushover}
  mail:     {type: email, smtp_server: 127.0.0.1, port: %[2]d, user: ops, password: smtpPASS-41, recipients: [ops@example.com], sender: mb@example.com}
  mx:       {type: matrix, homeserver: %[1]s, user: bot, password: matrixPASS-77, room_id: "!r:example.com"}
  mx2:      {type: matrix, homeserver: %[1]s, access_token: matrixTOKEN-78, room_id: "!r:example.com"}
  slack:    {type: slack, webhook_url: %[1]s/services/slack-PATH-secret}
  mm:       {type: mattermost, webhook_url: %[1]s/hooks/mattermost-PATH-secret}
  sms:      {type: sms_voipms, api_username: me, api_password: voipPASS-55, did: "5551234567", dst: "5557654321", api_url: %[1]s/voip}
  am:       {type: alertmanager, url: %[1]s, username: mb, password: amPASS-66}
users:
  alice:
    admin: true
    password: "pbkdf2:sha256:260000$Zx9QkL2mN4pR7sT1$44e399779d3cd4d34a539e8c23880ebafbe3946bdaaa976a4fb6479cd339db90"
`, u, smtpPort) + cpuRules
	path := writeConfig(t, dir, cfg)
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(t.Context(), Options{ConfigPath: path, StateDir: filepath.Join(dir, "state"), Logger: logger, Poll: 50 * time.Millisecond, Tick: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := contextWithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	defer func() { stop(); <-done; s.Close() }()

	observeCPU(t, s.Engine(), "web-01", 99)
	waitFor(t, "every channel's notification to fail at least once", func() bool {
		items := outboxItems(t, s.Store())
		for _, it := range items {
			if it.Status == store.StatusSent || (it.Status == store.StatusPending && it.Attempts == 0) {
				return false
			}
		}
		return len(items) == 10
	})
	c := newClient(t, &started{Service: s})
	c.user, c.pass = "alice", "correct horse"

	var replies bytes.Buffer
	get := func(method, path, body string) {
		code, data := c.do(method, path, body)
		fmt.Fprintf(&replies, "%s %s -> %d\n%s\n", method, path, code, data)
	}
	for _, p := range []string{
		"/api/0/hosts", "/api/0/alerts?all=true", "/api/0/alert_summary", "/api/0/messages",
		"/api/0/notifications", "/api/0/notifications?status=failed", "/api/0/silences",
		"/api/0/hosts/web-01/plugins", "/api/0/hosts/web-01/plugins/cpu_monitor", "/api/0/hosts/web-01/alerts",
		"/api/0/hosts/web-01/info", "/api/0/hosts/web-01/history?field=cpu_monitor.cpu_percent", "/metrics",
	} {
		get("GET", p, "")
	}
	get("POST", "/api/0/notify/test", "")
	get("POST", "/api/0/reload", "")
	get("POST", "/api/0/reload", `{"path":"x"}`)
	get("POST", "/api/0/alerts/acknowledge", `{"host":"web-01","field":"cpu_monitor.cpu_percent","comment":"x"}`)
	if !strings.Contains(replies.String(), `"ok": false`) || !strings.Contains(replies.String(), `"status": "failed"`) {
		t.Fatalf("the test did not make channels fail:\n%s", replies.String())
	}
	journal, err := os.ReadFile(filepath.Join(dir, "state", JournalDir, "messages.journal"))
	if err != nil {
		t.Fatal(err)
	}
	for _, sec := range secrets {
		for what, text := range map[string]string{"API replies": replies.String(), "log": logs.String(), "journal": string(journal)} {
			if i := strings.Index(text, sec); i >= 0 {
				t.Errorf("secret %q appears in the %s: ...%s...", sec, what, text[max(0, i-200):min(len(text), i+100)])
			}
		}
	}
}

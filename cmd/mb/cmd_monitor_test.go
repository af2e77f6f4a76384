package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/mbvm/mb/monitor"
	"github.com/mbvm/mb/monitor/auth"
	"github.com/mbvm/mb/monitor/notify/notifytest"
	"github.com/mbvm/mb/monitor/service"
)

func freeLoopback(t *testing.T) string {
	return fmt.Sprintf("127.0.0.1:%d", freePort(t))
}

// TestMonitorServeCLI runs `mb monitor serve` and drives it with the
// other `mb monitor` commands over --url: silences, a notification test
// through a webhook, reloads (a broken file by SIGHUP and by `mb monitor
// reload` is refused and the old config stays), and a clean SIGTERM.
func TestMonitorServeCLI(t *testing.T) {
	e := newEnv(t)
	hook := notifytest.NewServer(t)
	addr := freeLoopback(t)
	dir := filepath.Join(e.home, "srv")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "monitor.yaml")
	good := fmt.Sprintf("listen: %s\nnotification_channels:\n  hook: {type: webhook, url: %s/hook}\n", addr, hook.URL)
	if err := os.WriteFile(cfg, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serve := e.command(ctx, "monitor", "serve", "-c", cfg)
	log := &syncBuffer{}
	serve.Stderr = log
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer serve.Process.Kill()
	url := "--url=http://" + addr
	e.eventually("mb monitor serve to answer", func() bool { return e.mb("monitor", url, "hosts").code == 0 })

	if out := e.ok("monitor", url, "hosts"); !strings.HasPrefix(out, "NAME") {
		t.Errorf("hosts: %q", out)
	}
	out := e.ok("monitor", url, "silence", "web-01/disk_monitor/partitions./.percent", "--for", "2h", "--comment", "disk swap")
	if !strings.HasPrefix(out, "silence ") {
		t.Fatalf("silence: %q", out)
	}
	id := strings.TrimSuffix(strings.Fields(out)[1], ":")
	var sils struct{ Silences []service.SilenceJSON }
	if err := json.Unmarshal([]byte(e.ok("monitor", url, "silence", "ls", "--json")), &sils); err != nil {
		t.Fatal(err)
	}
	if len(sils.Silences) != 1 || sils.Silences[0].Field != "partitions./.percent" || sils.Silences[0].Comment != "disk swap" {
		t.Errorf("silences: %+v", sils)
	}
	e.ok("monitor", url, "silence", "rm", id)
	if r := e.mb("monitor", url, "silence", "rm", id); r.code != 1 || !strings.Contains(r.stderr, "no silence") {
		t.Errorf("removing a removed silence: %s", r)
	}
	if r := e.mb("monitor", url, "silence", "web-01"); r.code != 2 || !strings.Contains(r.stderr, "--for") {
		t.Errorf("silence without --for: %s", r)
	}

	if out := e.ok("monitor", url, "notify", "test"); !strings.Contains(out, "hook") || !strings.Contains(out, "sent") {
		t.Errorf("notify test: %q", out)
	}
	if n := len(hook.Requests()); n != 1 {
		t.Errorf("the webhook got %d requests, want 1", n)
	}
	if r := e.mb("monitor", url, "notify", "test", "pager"); r.code != 1 || !strings.Contains(r.stderr, `"pager"`) {
		t.Errorf("notify test of an unknown channel: %s", r)
	}

	// A broken file: SIGHUP and `mb monitor reload` refuse it; the
	// webhook channel is still configured.
	if err := os.WriteFile(cfg, []byte("notification_channels: {hook: {type: nope}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := serve.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	e.eventually("the refused SIGHUP reload in the log", func() bool { return strings.Contains(log.String(), "reload refused") })
	if r := e.mb("monitor", url, "reload"); r.code != 1 || !strings.Contains(r.stderr, "old configuration stays in force") || !strings.Contains(r.stderr, `"nope"`) {
		t.Errorf("reload of a broken file: %s", r)
	}
	if out := e.ok("monitor", url, "notify", "test", "hook"); !strings.Contains(out, "sent") {
		t.Errorf("notify test after refused reloads: %q", out)
	}
	if err := os.WriteFile(cfg, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := e.ok("monitor", url, "reload"); !strings.Contains(out, "reloaded "+cfg) {
		t.Errorf("reload: %q", out)
	}

	if err := serve.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := serve.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "monitor stopped") {
		t.Errorf("no clean stop in the log:\n%s", log.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "monitor", "monitor.db")); err != nil {
		t.Errorf("state not next to the config: %v", err)
	}
}

// TestMonitorCLIWithUsers drives a monitor with users: the commands
// authenticate with --user and $MB_MONITOR_PASSWORD, and the
// acknowledgement is made by that user.
func TestMonitorCLIWithUsers(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "monitor.yaml")
	// alice's password is "correct horse".
	text := `listen: 127.0.0.1:0
thresholds:
  cpu_monitor:
    cpu_percent: {warning: 80, critical: 90}
users:
  alice:
    admin: true
    password: "pbkdf2:sha256:1000$abc$86794c8711c43375863811cce5533ce24240f82f3f01fc5e55ae5676cb8560db"
`
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := service.New(context.Background(), service.Options{ConfigPath: cfg, StateDir: filepath.Join(dir, "state"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done; s.Close() }()
	for _, v := range []float64{50, 85, 95} {
		if err := s.Engine().Observe(ctx, monitor.Observation{Host: "web-01", Source: "vm", Plugin: "cpu_monitor", Fields: map[string]any{"cpu_percent": v}}); err != nil {
			t.Fatal(err)
		}
	}
	url := "--url=http://" + s.Addr().String()

	if r := e.mb("monitor", url, "--user", "alice", "hosts"); r.code != 2 || !strings.Contains(r.stderr, "MB_MONITOR_PASSWORD") {
		t.Errorf("--user without a password: %s", r)
	}
	e.extraEnv = []string{"MB_MONITOR_PASSWORD=wrong"}
	if r := e.mb("monitor", url, "--user", "alice", "hosts"); r.code != 1 || !strings.Contains(r.stderr, "authentication required") {
		t.Errorf("a wrong password: %s", r)
	}
	e.extraEnv = []string{"MB_MONITOR_PASSWORD=correct horse"}
	out := e.ok("monitor", url, "--user", "alice", "hosts")
	if !strings.Contains(out, "web-01") || !strings.Contains(out, "1 critical") {
		t.Errorf("hosts: %q", out)
	}
	out = e.ok("monitor", url, "--user", "alice", "alerts")
	if !strings.Contains(out, "cpu_monitor.cpu_percent") || !strings.Contains(out, "CRITICAL") {
		t.Errorf("alerts: %q", out)
	}
	e.ok("monitor", url, "--user", "alice", "ack", "web-01", "cpu_monitor.cpu_percent", "--for", "4h", "--comment", "batch job")
	var alerts struct{ Alerts []service.AlertJSON }
	if err := json.Unmarshal([]byte(e.ok("monitor", url, "--user", "alice", "alerts", "--json")), &alerts); err != nil {
		t.Fatal(err)
	}
	if len(alerts.Alerts) != 1 || alerts.Alerts[0].Ack == nil || alerts.Alerts[0].Ack.By != "alice" || alerts.Alerts[0].Ack.Comment != "batch job" {
		t.Errorf("acknowledged alert: %+v", alerts.Alerts)
	}
	if out := e.ok("monitor", url, "--user", "alice", "alerts"); !strings.Contains(out, "acked by alice") {
		t.Errorf("alerts after ack: %q", out)
	}
	if r := e.mb("monitor", url, "--user", "alice", "ack", "web-02", "cpu_monitor.cpu_percent"); r.code != 1 || !strings.Contains(r.stderr, `no such host "web-02"`) {
		t.Errorf("ack of an unknown host: %s", r)
	}
	out = e.ok("monitor", url, "--user", "alice", "history", "web-01", "cpu_monitor.cpu_percent", "--since", "1h")
	for _, v := range []string{"50", "85", "95"} {
		if !strings.Contains(out, v) {
			t.Errorf("history lacks %s: %q", v, out)
		}
	}
	if out := e.ok("monitor", url, "--user", "alice", "alerts", "--all", "--json"); !strings.Contains(out, `"alerts"`) {
		t.Errorf("alerts --all --json: %q", out)
	}
	if r := e.mb("monitor", "--url", "ftp://x", "hosts"); r.code != 2 || !strings.Contains(r.stderr, "http://HOST:PORT") {
		t.Errorf("a bad --url: %s", r)
	}
}

// TestMonitorPasswd: the hash made from standard input checks the
// password.
func TestMonitorPasswd(t *testing.T) {
	e := newEnv(t)
	cmd := e.command(context.Background(), "monitor", "passwd", "alice", "--iterations", "1000")
	cmd.Stdin = strings.NewReader("s3cret\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	h, err := auth.ParseHash(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	if !h.Check("s3cret") || h.Check("s3cret\n") {
		t.Errorf("hash %s does not check the password", out)
	}
}

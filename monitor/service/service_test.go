package service

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mbvm/mb/monitor"
	"github.com/mbvm/mb/monitor/notify/notifytest"
	"github.com/mbvm/mb/monitor/notify/webhook"
	"github.com/mbvm/mb/monitor/store"
)

// writeConfig writes monitor.yaml (mode 0600) into dir and returns its path.
func writeConfig(t testing.TB, dir, text string) string {
	t.Helper()
	p := filepath.Join(dir, "monitor.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// started is a running Service with its state in a temp directory.
type started struct {
	*Service
	path   string
	cancel context.CancelFunc
	done   chan error
}

// start runs a Service on the config text; it is stopped and closed when
// the test ends.
func start(t testing.TB, dir, cfg string) *started {
	t.Helper()
	path := writeConfig(t, dir, cfg)
	s, err := New(context.Background(), Options{ConfigPath: path, StateDir: filepath.Join(dir, "state"), Logger: quietLogger(), Poll: 50 * time.Millisecond, Tick: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st := &started{Service: s, path: path, cancel: cancel, done: make(chan error, 1)}
	go func() { st.done <- s.Run(ctx) }()
	t.Cleanup(st.stop)
	return st
}

var stopMu sync.Mutex

func (st *started) stop() {
	stopMu.Lock()
	defer stopMu.Unlock()
	if st.cancel == nil {
		return
	}
	st.cancel()
	<-st.done
	st.cancel = nil
	st.Close()
}

// waitFor polls cond until it holds, failing the test after a generous
// bound (a hang, not a timing assertion).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const cpuRules = `
thresholds:
  cpu_monitor:
    cpu_percent: {warning: 80, critical: 90}
`

func webhookConfig(url string) string {
	return fmt.Sprintf(`
notification_channels:
  hook:
    type: webhook
    url: %s
`, url) + cpuRules
}

func observeCPU(t testing.TB, e *monitor.Engine, host string, v float64) {
	t.Helper()
	err := e.Observe(context.Background(), monitor.Observation{Host: host, Source: "vm", Plugin: "cpu_monitor", Fields: map[string]any{"cpu_percent": v}})
	if err != nil {
		t.Fatal(err)
	}
}

func outboxItems(t testing.TB, st *store.Store) []store.OutboxItem {
	t.Helper()
	items, err := st.Outbox(context.Background(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	return items
}

// TestThresholdReachesWebhookOnce: a sample crossing a threshold becomes
// exactly one webhook request, through the durable outbox, and is
// journaled with its delivery.
func TestThresholdReachesWebhookOnce(t *testing.T) {
	srv := notifytest.NewServer(t)
	dir := t.TempDir()
	s := start(t, dir, webhookConfig(srv.URL+"/hook"))
	e := s.Engine()
	observeCPU(t, e, "web-01", 10)
	observeCPU(t, e, "web-01", 95)
	waitFor(t, "the webhook request", func() bool { return len(srv.Requests()) >= 1 })
	waitFor(t, "the outbox to record the delivery", func() bool {
		items := outboxItems(t, s.Store())
		return len(items) == 1 && items[0].Status == store.StatusSent
	})
	observeCPU(t, e, "web-01", 96) // still critical: no new notification
	s.stop()

	reqs := srv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d webhook requests, want 1", len(reqs))
	}
	var p webhook.Payload
	if err := json.Unmarshal(reqs[0].Body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Host != "web-01" || p.Plugin != "cpu_monitor" || p.Field != "cpu_percent" || p.Level != "CRITICAL" {
		t.Errorf("payload %+v", p)
	}
	journal, err := os.ReadFile(filepath.Join(dir, "state", JournalDir, "messages.journal"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"ID":"PLG"`, `"ID":"ALERT"`, `"ID":"NOTIFY"`, `"ID":"DELIVERY"`, `"outcome":"sent"`} {
		if !strings.Contains(string(journal), want) {
			t.Errorf("journal lacks %s:\n%s", want, journal)
		}
	}
}

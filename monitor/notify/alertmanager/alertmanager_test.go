package alertmanager_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mbvm/mb/internal/testenv"
	"github.com/mbvm/mb/monitor/notify"
	"github.com/mbvm/mb/monitor/notify/alertmanager"
	"github.com/mbvm/mb/monitor/notify/notifytest"
)

var types = notify.Types{alertmanager.Type: alertmanager.Parse}

type posted struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    string            `json:"startsAt"`
	EndsAt      string            `json:"endsAt"`
}

func TestPostsAlertsToEveryURLUntilOneTakesThem(t *testing.T) {
	down := notifytest.NewServer(t)
	down.Reply = func(int, notifytest.Request) (int, string) { return 503, "" }
	up := notifytest.NewServer(t)
	ch := notifytest.Parse(t, types, fmt.Sprintf("type: alertmanager\nurls: [%s, %s/]\nusername: mb\npassword: XXXSECRETXXX\nends_after: 3h\n", down.URL, up.URL))
	if err := ch.Send(context.Background(), notifytest.Alert()); err != nil {
		t.Fatal(err)
	}
	if len(down.Requests()) != 1 || len(up.Requests()) != 1 {
		t.Fatalf("requests %d %d", len(down.Requests()), len(up.Requests()))
	}
	r := up.Requests()[0]
	user, pass, _ := (&http.Request{Header: r.Header}).BasicAuth()
	if r.Method != "POST" || r.Path != "/api/v2/alerts" || r.Header.Get("Content-Type") != "application/json" || user != "mb" || pass != "XXXSECRETXXX" {
		t.Fatalf("request %s %s %v", r.Method, r.Path, r.Header)
	}
	var alerts []posted
	if err := json.Unmarshal(r.Body, &alerts); err != nil {
		t.Fatal(err)
	}
	if len(alerts) != 3 {
		t.Fatalf("%d alerts: %s", len(alerts), r.Body)
	}
	want := map[string]string{"alertname": "cpu_monitor.cpu_percent", "host": "web-01", "plugin": "cpu_monitor", "field": "cpu_percent"}
	for _, a := range alerts {
		for k, v := range want {
			if a.Labels[k] != v {
				t.Fatalf("label %s=%q, want %q", k, a.Labels[k], v)
			}
		}
		switch a.Labels["severity"] {
		case "critical":
			if a.StartsAt != "2026-11-26T05:00:00Z" || a.EndsAt != "2026-11-26T08:00:00Z" || a.Annotations["value"] != "97.5" || a.Annotations["description"] != "cpu_percent is 97.5 (> 90)" {
				t.Fatalf("firing alert %+v", a)
			}
		case "warning", "unknown":
			if a.StartsAt != "" || a.EndsAt != "2026-11-26T05:00:00Z" {
				t.Fatalf("resolved alert %+v", a)
			}
		default:
			t.Fatalf("severity %q", a.Labels["severity"])
		}
	}
	var rec []posted
	_ = ch.Send(context.Background(), notifytest.Recovery())
	if err := json.Unmarshal(up.Requests()[1].Body, &rec); err != nil || len(rec) != 3 {
		t.Fatal(err, len(rec))
	}
	for _, a := range rec {
		if a.EndsAt != "2026-11-26T05:10:00Z" || a.StartsAt != "" {
			t.Fatalf("recovery %+v", a)
		}
	}
}

func TestAllRefusedIsPermanent(t *testing.T) {
	srv := notifytest.NewServer(t)
	srv.Reply = func(int, notifytest.Request) (int, string) { return 400, `{"code":400,"message":"bad"}` }
	ch := notifytest.Parse(t, types, fmt.Sprintf("type: alertmanager\nurl: %s\n", srv.URL))
	if err := ch.Send(context.Background(), notifytest.Alert()); err == nil || !notify.IsPermanent(err) {
		t.Fatal(err)
	}
}

// TestRealAlertmanagerShowsTheAlert starts Debian's prometheus-alertmanager
// on a loopback port and checks that its API shows the alert mb sent, and
// no longer shows it active after the recovery.
func TestRealAlertmanagerShowsTheAlert(t *testing.T) {
	bin := testenv.Tool(t, "prometheus-alertmanager", "prometheus-alertmanager")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfg, []byte("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--config.file="+cfg, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=warn")
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	base := "http://" + addr
	waitReady(t, base, logs)

	ch := notifytest.Parse(t, types, "type: alertmanager\nurl: "+base+"\n")
	// WARNING, then the escalation to CRITICAL: one alert stays, not two.
	w := notifytest.Alert()
	w.ID, w.Level, w.Previous = "w1", notify.Warning, notify.OK
	w.Time = time.Now().Add(-2 * time.Minute).Truncate(time.Second)
	if err := ch.Send(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	if active := activeAlerts(t, base); len(active) != 1 || active[0].Labels["severity"] != "warning" {
		t.Fatalf("after the warning: %+v", active)
	}
	m := notifytest.Alert()
	m.Time = time.Now().Add(-time.Minute).Truncate(time.Second)
	if err := ch.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	active := activeAlerts(t, base)
	if len(active) != 1 {
		t.Fatalf("Alertmanager shows %d active alerts, want 1: %+v", len(active), active)
	}
	a := active[0]
	if a.Labels["alertname"] != "cpu_monitor.cpu_percent" || a.Labels["host"] != "web-01" || a.Labels["severity"] != "critical" || a.Annotations["value"] != "97.5" || a.Status.State != "active" || !a.EndsAt.Equal(m.Time.Add(alertmanager.DefaultEndsAfter)) {
		t.Fatalf("alert %+v", a)
	}

	rec := notifytest.Recovery()
	rec.Time = time.Now().Truncate(time.Second)
	if err := ch.Send(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	if active := activeAlerts(t, base); len(active) != 0 {
		t.Fatalf("after the recovery Alertmanager still shows %+v", active)
	}
}

type amAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	EndsAt      time.Time         `json:"endsAt"`
	Status      struct {
		State string `json:"state"`
	} `json:"status"`
}

// activeAlerts lists the alerts Alertmanager shows (it leaves out the
// resolved ones).
func activeAlerts(t *testing.T, base string) []amAlert {
	t.Helper()
	resp, err := http.Get(base + "/api/v2/alerts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /api/v2/alerts: %s %s", resp.Status, body)
	}
	var all []amAlert
	if err := json.Unmarshal(body, &all); err != nil {
		t.Fatal(err)
	}
	return all
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitReady(t *testing.T, base string, logs *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("alertmanager did not become ready: %s", logs.String())
}

// syncBuffer collects a process's output for a failure message.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

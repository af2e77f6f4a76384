package service

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/internal/testenv"
	"github.com/mbvm/mb/monitor"
)

// aliceUsers gives the user alice the password "correct horse".
const aliceUsers = `
users:
  alice:
    admin: true
    password: "pbkdf2:sha256:260000$Zx9QkL2mN4pR7sT1$44e399779d3cd4d34a539e8c23880ebafbe3946bdaaa976a4fb6479cd339db90"
`

// metricsService runs a service with two hosts, nested plugin fields, an
// RTT, alerts and a delivered notification, so that every family of
// /metrics has series.
func metricsService(t *testing.T, users string) *started {
	t.Helper()
	hook := newHookServer(t)
	s := start(t, t.TempDir(), apiConfig(hook.URL)+users)
	ctx := context.Background()
	e := s.Engine()
	if err := e.Observe(ctx, monitor.Observation{Host: "web-01", Source: "vm", RTT: 3 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	observeCPU(t, e, "web-01", 85)
	err := e.Observe(ctx, monitor.Observation{Host: "db-01", Source: "hbc", Plugin: "disk_monitor", Fields: map[string]any{
		"partitions": map[string]any{"/": map[string]any{"percent": 42.5, "free_gb": 12.0}, "/var/lib/db": map[string]any{"percent": 97.0}},
		"label":      "not a number",
	}})
	if err != nil {
		t.Fatal(err)
	}
	observeCPU(t, e, "db-01", 95)
	waitFor(t, "the notifications to be sent", func() bool {
		c := s.disp.Counts()["hook"]
		return c.Sent == 2
	})
	return s
}

func scrape(t *testing.T, s *started, user, pass string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+s.Addr().String()+"/metrics", nil)
	req.Header.Set("Accept", "text/plain")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, body)
	}
	return string(body)
}

// TestMetricsPassPromtool: the exposition has the monitor's series and
// passes `promtool check metrics`.
func TestMetricsPassPromtool(t *testing.T) {
	promtool := testenv.Tool(t, "promtool", "prometheus")
	s := metricsService(t, "")
	text := scrape(t, s, "", "")
	for _, want := range []string{
		`mb_monitor_host_up{host="web-01"} 1`,
		`mb_monitor_host_reachability{host="db-01",state="up"} 1`,
		`mb_monitor_host_overdue{host="web-01"} 0`,
		`mb_monitor_host_rtt_seconds{host="web-01"} 0.003`,
		`mb_monitor_host_last_seen_age_seconds{host="db-01"}`,
		`mb_monitor_field_value{field="cpu_percent",host="web-01",plugin="cpu_monitor"} 85`,
		`mb_monitor_field_value{field="partitions./var/lib/db.percent",host="db-01",plugin="disk_monitor"} 97`,
		`mb_monitor_alert_level{field="cpu_percent",host="db-01",plugin="cpu_monitor"} 2`,
		`mb_monitor_alerts{level="WARNING"} 1`,
		`mb_monitor_notification_attempts_total{channel="hook",outcome="sent"} 2`,
		`mb_monitor_notification_attempts_total{channel="hook",outcome="failed"} 0`,
		`mb_monitor_hosts 2`,
		`mb_monitor_observations_total 4`,
		`mb_monitor_alert_transitions_total`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(text, `field="label"`) {
		t.Error("a non-numeric field became a series")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestPrometheusScrapes: a real Prometheus scrapes the monitor's TCP
// listener (with Basic auth), shows the target up, and answers a query
// with the monitor's series.
func TestPrometheusScrapes(t *testing.T) {
	prom := testenv.Tool(t, "prometheus", "prometheus")
	s := metricsService(t, aliceUsers)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pass"), []byte("correct horse"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: mb
    basic_auth:
      username: alice
      password_file: %s
    static_configs:
      - targets: [%q]
`, filepath.Join(dir, "pass"), s.Addr().String())
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	var log bytes.Buffer
	cmd := exec.Command(prom, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+port)
	cmd.Stdout, cmd.Stderr = &syncWriter{w: &log}, &syncWriter{w: &log}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", log.String())
		}
	})
	api := "http://" + port + "/api/v1/"
	var targets struct {
		Data struct {
			ActiveTargets []struct {
				ScrapeURL string `json:"scrapeUrl"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	waitFor(t, "prometheus to report the target up", func() bool {
		if !getJSON(api+"targets", &targets) || len(targets.Data.ActiveTargets) != 1 {
			return false
		}
		return targets.Data.ActiveTargets[0].Health == "up"
	})
	var result struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  []any             `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	q := api + "query?query=" + url.QueryEscape(`mb_monitor_field_value{host="db-01",plugin="disk_monitor"}`)
	waitFor(t, "prometheus to have mb's series", func() bool {
		return getJSON(q, &result) && len(result.Data.Result) == 3
	})
	got := map[string]string{}
	for _, r := range result.Data.Result {
		got[r.Metric["field"]] = fmt.Sprint(r.Value[1])
	}
	if got["partitions./.percent"] != "42.5" || got["partitions./var/lib/db.percent"] != "97" || r0(result.Data.Result).Metric["job"] != "mb" {
		t.Errorf("query result: %v", got)
	}
}

func r0[T any](s []T) T { return s[0] }

func getJSON(u string, out any) bool {
	resp, err := http.Get(u)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return false
	}
	return json.NewDecoder(resp.Body).Decode(out) == nil
}

// freePort returns a loopback address with a port free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

package web

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestPagesRender(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]any{
		"live":     LiveBody{Hosts: []LiveHost{{Name: "a<b", Reach: "up", Worst: "OK"}}},
		"host":     HostBody{Name: "web", Reach: "up", Worst: "OK", Range: "hour", Ranges: []string{"hour"}, IsVM: true, CanAct: true},
		"alerts":   AlertsBody{Level: "all", Levels: []string{"all"}},
		"settings": SettingsBody{},
		"login":    LoginBody{Next: "/live"},
		"error":    ErrorBody{Status: 404, Message: "no such host"},
	} {
		w := httptest.NewRecorder()
		p.Render(w, 200, name, Page{Title: name, User: "alice", CSRF: "tok", Body: body})
		out := w.Body.String()
		if w.Code != 200 || !strings.Contains(out, "</html>") {
			t.Errorf("%s: %d\n%s", name, w.Code, out)
		}
		if strings.Contains(out, "<script>") || !strings.Contains(w.Header().Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Errorf("%s: inline script or no CSP", name)
		}
		if name == "live" && (strings.Contains(out, "a<b") || !strings.Contains(out, "a&lt;b")) {
			t.Errorf("live: host name not escaped")
		}
		if name == "host" && !strings.Contains(out, `name="csrf_token" value="tok"`) {
			t.Errorf("host: the VM form has no CSRF token")
		}
	}
}

func TestChartHasAxesAndUnits(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	var pts []Point
	for i := 0; i < 60; i++ {
		pts = append(pts, Point{T: now.Add(time.Duration(i-60) * time.Minute), Value: float64(i) * 1.5})
	}
	svg := string(Chart(ChartSpec{Title: "cpu_monitor.cpu_percent", Unit: "%", From: now.Add(-time.Hour), To: now, Points: pts}))
	for _, want := range []string{"<polyline", "(%)", "100%", "0%", `class="axis"`} {
		if !strings.Contains(svg, want) {
			t.Errorf("chart lacks %q:\n%s", want, svg)
		}
	}
	empty := string(Chart(ChartSpec{Title: "x", From: now.Add(-time.Hour), To: now}))
	if !strings.Contains(empty, "no data") {
		t.Errorf("empty chart: %s", empty)
	}
	if got := FormatBytes(1536 * 1024 * 1024); got != "1.5 GiB" {
		t.Errorf("FormatBytes: %s", got)
	}
	for f, u := range map[string]string{"cpu_monitor.cpu_percent": "%", "memory.used_bytes": "bytes", "rtt": "ms", "load.load1": ""} {
		if UnitOf(f) != u {
			t.Errorf("UnitOf(%s) = %q, want %q", f, UnitOf(f), u)
		}
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"

	"github.com/mbvm/mb/monitor/auth"
	"github.com/mbvm/mb/monitor/service"
)

// dashboardPart measures the monitor's dashboard with a fleet of 1,000
// hosts fed straight into an in-process monitor: /live's first render in
// headless Chromium, how long a heartbeat takes to reach a live-feed
// client while 50 other clients are connected, and what the feed costs
// each client in bytes per second.
func dashboardPart() part {
	return part{name: "dashboard", rows: []rowDef{
		{id: "dash.render", name: "dashboard: /live first render with 1,000 hosts in headless Chromium (navigation start to DOMContentLoaded, every row in the DOM)", unit: "ms", target: &target{"<", 1000}},
		{id: "dash.latency.p99", name: "dashboard: heartbeat to a live-feed WebSocket client, p99, 1,000 hosts heartbeating every 10 s, 50 other clients", unit: "ms", target: &target{"<", 500}},
		{id: "dash.latency.p50", name: "dashboard: the same, median", unit: "ms"},
		{id: "dash.bytes", name: "dashboard: live-feed bytes per second per client, 1,000 hosts heartbeating every 10 s", unit: "B/s"},
	}, run: runDashboard}
}

const (
	dashHosts   = 1000
	dashClients = 50
	dashEvery   = 10 * time.Second
)

func runDashboard(ctx context.Context, e *env, r *results) error {
	dir, err := os.MkdirTemp(e.work, "dash")
	if err != nil {
		return err
	}
	hash, err := auth.Make("bench-pw", 1000)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "monitor.yaml")
	cfg := fmt.Sprintf("listen: 127.0.0.1:0\ninterval: %d\njournal_enabled: false\nusers:\n  admin: {admin: true, password: %q}\n", int(dashEvery.Seconds()), hash)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	svc, err := service.New(ctx, service.Options{ConfigPath: cfgPath, StateDir: filepath.Join(dir, "state"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = svc.Run(sctx) }()
	defer func() { stop(); <-done; svc.Close() }()
	eng := svc.Engine()
	name := func(i int) string { return fmt.Sprintf("host-%04d", i) }
	for i := range dashHosts {
		if err := eng.Heartbeat(ctx, name(i), "heartbeat", fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), 2*time.Millisecond); err != nil {
			return err
		}
	}
	base := "http://" + svc.Addr().String()
	token, err := dashLogin(ctx, base)
	if err != nil {
		return err
	}

	if err := dashRender(ctx, e, r, base); err != nil {
		r.notMeasured("dash.render", err.Error())
		e.log.Warn("dashboard render not measured", "err", err)
	}

	// 50 background clients and one measuring client.
	wsURL := "ws://" + svc.Addr().String() + "/ws"
	hdr := http.Header{"Cookie": {service.SessionCookie + "=" + token}}
	var bg sync.WaitGroup
	var bgBytes []*atomic.Int64
	cctx, cancelClients := context.WithCancel(ctx)
	defer func() { cancelClients(); bg.Wait() }()
	for range dashClients {
		conn, _, err := websocket.Dial(cctx, wsURL, &websocket.DialOptions{HTTPHeader: hdr})
		if err != nil {
			return fmt.Errorf("live-feed client: %w", err)
		}
		conn.SetReadLimit(64 << 20)
		n := &atomic.Int64{}
		bgBytes = append(bgBytes, n)
		bg.Add(1)
		go func() {
			defer bg.Done()
			defer conn.CloseNow()
			for {
				_, data, err := conn.Read(cctx)
				if err != nil {
					return
				}
				n.Add(int64(len(data)))
			}
		}()
	}
	probe, _, err := websocket.Dial(cctx, wsURL, &websocket.DialOptions{HTTPHeader: hdr})
	if err != nil {
		return err
	}
	probe.SetReadLimit(64 << 20)
	type key struct {
		host string
		ls   int64
	}
	var amu sync.Mutex
	arrived := map[key]time.Time{}
	bg.Add(1)
	go func() {
		defer bg.Done()
		defer probe.CloseNow()
		for {
			_, data, err := probe.Read(cctx)
			if err != nil {
				return
			}
			now := time.Now()
			var f service.Frame
			if json.Unmarshal(data, &f) != nil {
				continue
			}
			amu.Lock()
			for _, h := range f.Hosts {
				arrived[key{h.Name, h.LastSeen}] = now
			}
			amu.Unlock()
		}
	}()
	time.Sleep(2 * time.Second) // the snapshots go out first
	for _, n := range bgBytes {
		n.Store(0)
	}

	// Every host heartbeats every 10 s, spread evenly.
	window := 60 * time.Second
	if e.cfg.quick {
		window = 20 * time.Second
	}
	type sent struct {
		k  key
		at time.Time
	}
	var sends []sent
	began := time.Now()
	tick := time.NewTicker(dashEvery / dashHosts)
	i := 0
	for time.Since(began) < window {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		h := name(i % dashHosts)
		i++
		t0 := time.Now()
		if err := eng.Heartbeat(ctx, h, "heartbeat", "", 2*time.Millisecond); err != nil {
			return err
		}
		if info, ok := eng.Host(h); ok {
			sends = append(sends, sent{key{h, info.LastSeen.UnixMilli()}, t0})
		}
	}
	tick.Stop()
	elapsed := time.Since(began)
	time.Sleep(2 * time.Second) // the last frames arrive
	var total int64
	for _, n := range bgBytes {
		total += n.Load()
	}
	r.set("dash.bytes", []float64{float64(total) / float64(len(bgBytes)) / elapsed.Seconds()})

	amu.Lock()
	var lat []float64
	missing := 0
	for _, s := range sends {
		at, ok := arrived[s.k]
		if !ok {
			missing++
			continue
		}
		lat = append(lat, float64(at.Sub(s.at))/float64(time.Millisecond))
	}
	amu.Unlock()
	if len(lat) == 0 {
		return fmt.Errorf("no heartbeat reached the live-feed client (%d sent)", len(sends))
	}
	slices.Sort(lat)
	r.set("dash.latency.p99", []float64{quantile(lat, 0.99)})
	r.set("dash.latency.p50", []float64{quantile(lat, 0.5)})
	r.note("dash.latency.p99", "%d heartbeats in %s, %d not seen by the client (superseded within one %s frame)", len(sends), elapsed.Round(time.Second), missing, service.FeedPeriod)
	return nil
}

// dashLogin signs in and returns the session token.
func dashLogin(ctx context.Context, base string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/api/0/auth/login", strings.NewReader(`{"username":"admin","password":"bench-pw"}`))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Token == "" {
		return "", fmt.Errorf("sign-in: status %d: %v", resp.StatusCode, err)
	}
	return out.Token, nil
}

// dashRender loads /live in headless Chromium several times and records
// the time from navigation start to DOMContentLoaded, after checking that
// every host's row is there.
func dashRender(ctx context.Context, e *env, r *results, base string) error {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		return fmt.Errorf("chromium is not installed (apt-get install chromium)")
	}
	actx, cancel := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 800))...)
	defer cancel()
	bctx, cancel2 := chromedp.NewContext(actx)
	defer cancel2()
	if err := chromedp.Do(bctx,
		chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(chromedp.ID("password")),
		chromedp.SendKeys(chromedp.ID("username"), "admin"),
		chromedp.SendKeys(chromedp.ID("password"), "bench-pw"),
		chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("hosts")),
	); err != nil {
		return fmt.Errorf("sign in: %w", err)
	}
	runs := 5
	if e.cfg.quick {
		runs = 1
	}
	var ms []float64
	for range runs {
		if err := chromedp.Do(bctx, chromedp.Navigate(base+"/live"), chromedp.WaitVisible(chromedp.ID("hosts"))); err != nil {
			return err
		}
		rows, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("#hosts tbody tr").length`))
		if err != nil {
			return err
		}
		if rows != dashHosts {
			return fmt.Errorf("/live shows %d rows, want %d", rows, dashHosts)
		}
		dcl, err := chromedp.Run(bctx, chromedp.Evaluate[float64](`performance.getEntriesByType("navigation")[0].domContentLoadedEventEnd`))
		if err != nil {
			return err
		}
		ms = append(ms, dcl)
	}
	r.set("dash.render", ms)
	return nil
}

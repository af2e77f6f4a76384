package monitor

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mbvm/mb/monitor/alert"
	"github.com/mbvm/mb/monitor/threshold"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t0.Add(d)
	return c.t
}

// inbox collects notifications.
type inbox struct {
	mu sync.Mutex
	ns []Notification
}

func (b *inbox) Notify(_ context.Context, n Notification) {
	b.mu.Lock()
	b.ns = append(b.ns, n)
	b.mu.Unlock()
}

// take returns and forgets what arrived, as "host plugin.field PREV->LEVEL"
// lines, sorted (hosts are ticked in no particular order).
func (b *inbox) take() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, n := range b.ns {
		out = append(out, fmt.Sprintf("%s %s %s->%s", n.Host, fieldName(n.Plugin, n.Field), n.Previous, n.Level))
	}
	b.ns = nil
	sort.Strings(out)
	return out
}

func (b *inbox) last() Notification {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ns[len(b.ns)-1]
}

func fp(v float64) *float64 { return &v }
func sp(v string) *string   { return &v }
func ip(v int) *int         { return &v }

type harness struct {
	t   *testing.T
	e   *Engine
	c   *clock
	box *inbox
	ctx context.Context
}

func newHarness(t *testing.T, s Settings, opts ...func(*Options)) *harness {
	t.Helper()
	c := &clock{t: t0}
	box := &inbox{}
	o := Options{Settings: s, Clock: c.Now, Notifier: box}
	for _, f := range opts {
		f(&o)
	}
	e, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, e: e, c: c, box: box, ctx: context.Background()}
}

// cpu sends a cpu_monitor sample at second sec.
func (h *harness) cpu(host string, sec int, pct float64) {
	h.t.Helper()
	now := h.c.Set(time.Duration(sec) * time.Second)
	if err := h.e.Observe(h.ctx, Observation{Host: host, Source: "vm", Time: now, Plugin: "cpu_monitor",
		Fields: map[string]any{"cpu_percent": pct, "cpu_core_count": 2}}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) tick(sec int) {
	h.t.Helper()
	if err := h.e.Tick(h.ctx, h.c.Set(time.Duration(sec)*time.Second)); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) expect(what string, want ...string) {
	h.t.Helper()
	got := h.box.take()
	if strings.Join(got, "|") != strings.Join(want, "|") {
		h.t.Fatalf("%s: notifications %q, want %q", what, got, want)
	}
}

func cpuSettings() Settings {
	return Settings{
		Interval: 24 * time.Hour, Grace: 2 * time.Second,
		Thresholds: threshold.Spec{"cpu_monitor": {"cpu_percent": {
			Warning: fp(80), Critical: fp(90), Hysteresis: fp(0.1), Count: ip(2),
			Display: sp("CPU {cpu_percent}% on {cpu_core_count} cores ({op_symbol}{threshold_value}) {nope}"),
		}}},
		DefaultOwner: "alice",
		Hosts: map[string]HostSettings{
			"db": {Owner: "bob", Managers: []string{"carol", "bob"}, Monitors: []string{"dave"}, Watch: true},
		},
	}
}

func TestThresholdAlertsEndToEnd(t *testing.T) {
	s := cpuSettings()
	s.Renotify = 5 * time.Minute
	h := newHarness(t, s)
	h.cpu("web", 0, 50)
	h.cpu("web", 10, 85) // one breach, count 2
	h.expect("first breach")
	h.cpu("web", 20, 95) // second breach: confirmed at the newest level
	h.expect("count reached", "web cpu_monitor.cpu_percent OK->CRITICAL")
	h.cpu("web", 30, 85) // held by hysteresis (recover at 81)
	h.cpu("web", 40, 81) // CRITICAL -> WARNING: quiet
	h.expect("de-escalation")
	h.cpu("web", 50, 92)
	h.cpu("web", 60, 92)
	h.expect("re-escalation to a level already sent in this window: flap damping")
	h.cpu("web", 70, 70)
	h.expect("recovery while flapping waits for the window")
	h.tick(319)
	h.expect("window not over")
	h.tick(320)
	h.expect("window over (from the quietly reached WARNING)", "web cpu_monitor.cpu_percent WARNING->OK")
	h.cpu("web", 400, 50) // calm for a window: flapping ends
	h.tick(401)
	h.cpu("web", 700, 85)
	h.cpu("web", 710, 85)
	h.expect("warning", "web cpu_monitor.cpu_percent OK->WARNING")
	h.cpu("web", 720, 91)
	h.cpu("web", 730, 91)
	h.expect("escalation", "web cpu_monitor.cpu_percent WARNING->CRITICAL")
	h.cpu("web", 740, 85)
	info, _ := h.e.Host("web")
	var st AlertInfo
	for _, a := range info.Alerts {
		if a.Key.Plugin == "cpu_monitor" {
			st = a
		}
	}
	if want := "web CRITICAL: CPU 85% on 2 cores (>90) {nope}"; st.Text != want {
		t.Errorf("alert text %q, want %q", st.Text, want)
	}
	h.cpu("web", 750, 80)
	h.expect("quiet de-escalation")
	h.cpu("web", 760, 60)
	h.expect("recovery", "web cpu_monitor.cpu_percent WARNING->OK")
	if info.Owner != "alice" {
		t.Errorf("owner %q, want default owner alice", info.Owner)
	}
}

func TestRecipientsAndNotificationShape(t *testing.T) {
	h := newHarness(t, cpuSettings())
	h.cpu("db", 0, 99)
	h.cpu("db", 1, 99)
	n := h.box.last()
	if strings.Join(n.Recipients, ",") != "bob,carol,dave" {
		t.Errorf("recipients %v, want owner, managers, monitors without repeats", n.Recipients)
	}
	if n.ID == "" || n.Value != "99" || n.Level != "CRITICAL" || n.Previous != "OK" || n.Recovery || !n.Time.Equal(t0.Add(time.Second)) {
		t.Errorf("notification %+v", n)
	}
	h.cpu("db", 2, 10)
	if n := h.box.last(); !n.Recovery || n.Level != "OK" || n.Previous != "CRITICAL" {
		t.Errorf("recovery %+v", n)
	}
	h.cpu("web", 3, 99)
	h.cpu("web", 4, 99)
	if n := h.box.last(); strings.Join(n.Recipients, ",") != "alice" {
		t.Errorf("web recipients %v, want the default owner", n.Recipients)
	}
}

func TestRenotifyAckAndSilence(t *testing.T) {
	s := cpuSettings()
	s.Renotify = time.Hour
	h := newHarness(t, s)
	h.cpu("web", 0, 95)
	h.cpu("web", 10, 95)
	h.expect("alert", "web cpu_monitor.cpu_percent OK->CRITICAL")
	for sec := 20; sec < 3600; sec += 10 {
		h.cpu("web", sec, 95)
		h.tick(sec + 1)
	}
	h.expect("within the hour")
	h.cpu("web", 3610, 95)
	h.expect("renotify", "web cpu_monitor.cpu_percent CRITICAL->CRITICAL")
	k := alert.Key{Host: "web", Plugin: "cpu_monitor", Field: "cpu_percent"}
	if err := h.e.Acknowledge(h.ctx, k, "alice", "on it", t0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	for sec := 3620; sec < 3*3600; sec += 60 {
		h.cpu("web", sec, 95)
		h.tick(sec + 1)
	}
	h.expect("acknowledged")
	h.cpu("web", 3*3600, 95)
	h.expect("ack expired", "web cpu_monitor.cpu_percent CRITICAL->CRITICAL")
	if err := h.e.Acknowledge(h.ctx, alert.Key{Host: "web", Plugin: "x"}, "a", "", time.Time{}); !errors.Is(err, ErrNoAlert) {
		t.Errorf("ack of unknown alert: %v", err)
	}

	// A silence on db holds its alert; deleting it releases the notification.
	sil, err := h.e.AddSilence(h.ctx, alert.Silence{Host: "db", End: t0.Add(10 * time.Hour), Comment: "kernel upgrade", By: "bob"})
	if err != nil || sil.ID == "" {
		t.Fatalf("silence: %v %+v", err, sil)
	}
	h.cpu("db", 3*3600+10, 95)
	h.cpu("db", 3*3600+20, 95)
	h.tick(3*3600 + 30)
	h.expect("silenced")
	if as := h.e.Alerts(AlertFilter{Host: "db"}); len(as) != 1 || !as[0].Silenced {
		t.Errorf("silenced alert listing: %+v", as)
	}
	if err := h.e.DeleteSilence(h.ctx, sil.ID); err != nil {
		t.Fatal(err)
	}
	h.tick(3*3600 + 40)
	h.expect("silence deleted", "db cpu_monitor.cpu_percent OK->CRITICAL")
	if err := h.e.DeleteSilence(h.ctx, sil.ID); !errors.Is(err, ErrNoSilence) {
		t.Errorf("second delete: %v", err)
	}
	if _, err := h.e.AddSilence(h.ctx, alert.Silence{End: t0}); err == nil {
		t.Error("silence matching everything accepted")
	}
}

// TestTopology: a host that goes down sends one notification, its metric
// alerts are held (no renotify, no stale alerts), and it recovers once.
func TestTopology(t *testing.T) {
	s := cpuSettings()
	s.Renotify = 10 * time.Minute
	s.Interval = 10 * time.Second
	h := newHarness(t, s)
	h.cpu("web", 0, 85)
	h.cpu("web", 10, 85)
	h.expect("warning", "web cpu_monitor.cpu_percent OK->WARNING")
	h.tick(21) // 11 s since the last report: within interval+grace
	h.expect("in time")
	h.tick(23)
	h.expect("overdue", "web reachability OK->CRITICAL")
	if hi, _ := h.e.Host("web"); hi.Reach != Overdue {
		t.Errorf("reach %v, want overdue", hi.Reach)
	}
	h.tick(60) // down after 3 intervals + grace: same level, no news
	if hi, _ := h.e.Host("web"); hi.Reach != Down {
		t.Errorf("reach %v, want down", hi.Reach)
	}
	for sec := 60; sec < 3600; sec += 30 {
		h.tick(sec)
	}
	h.expect("held while down", "web reachability CRITICAL->CRITICAL", "web reachability CRITICAL->CRITICAL",
		"web reachability CRITICAL->CRITICAL", "web reachability CRITICAL->CRITICAL", "web reachability CRITICAL->CRITICAL")
	as := h.e.Alerts(AlertFilter{Host: "web"})
	for _, a := range as {
		if a.Key.Plugin == "cpu_monitor" && (!a.Held || !a.Stale) {
			t.Errorf("metric alert not held while down: %+v", a)
		}
	}
	// It comes back with a heartbeat only: recovery, metric alert still held (stale).
	h.c.Set(3600 * time.Second)
	if err := h.e.Heartbeat(h.ctx, "web", "vm", "", 2*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	h.expect("back up", "web reachability CRITICAL->OK")
	h.tick(3601)
	h.expect("stale metric alert is held")
	h.cpu("web", 3605, 85)
	h.expect("fresh sample: overdue renotify of the ongoing warning", "web cpu_monitor.cpu_percent WARNING->WARNING")
}

func TestExpectedAbsenceAndMarkDown(t *testing.T) {
	h := newHarness(t, cpuSettings())
	h.cpu("vm1", 0, 10)
	h.c.Set(5 * time.Second)
	if err := h.e.MarkStopped(h.ctx, "vm1", "stopped by the user"); err != nil {
		t.Fatal(err)
	}
	for sec := 10; sec < 600; sec += 10 {
		h.tick(sec)
	}
	h.expect("stopped is not down")
	hi, _ := h.e.Host("vm1")
	if hi.Reach != Stopped || hi.ReachReason != "stopped by the user" {
		t.Errorf("reach %v %q", hi.Reach, hi.ReachReason)
	}
	h.cpu("vm1", 5, 10) // a pull made before the stop, arriving after it
	if hi, _ := h.e.Host("vm1"); hi.Reach != Stopped {
		t.Errorf("a late report revived a stopped host: %v", hi.Reach)
	}
	h.cpu("vm1", 600, 10)
	h.expect("started again")
	h.c.Set(605 * time.Second)
	if err := h.e.MarkDown(h.ctx, "vm1", "qemu exited with signal 9"); err != nil {
		t.Fatal(err)
	}
	h.expect("crash", "vm1 reachability OK->CRITICAL")
	h.tick(606)
	h.expect("still down, nothing new")
	h.cpu("vm1", 610, 10)
	h.expect("restarted", "vm1 reachability CRITICAL->OK")
	// A clean shutdown announcement is an expected absence too.
	now := h.c.Set(620 * time.Second)
	if err := h.e.Observe(h.ctx, Observation{Host: "vm1", Time: now, Shutdown: true}); err != nil {
		t.Fatal(err)
	}
	h.tick(2000)
	h.expect("shutdown")
}

func TestWatchFalseMutes(t *testing.T) {
	s := cpuSettings()
	s.Hosts["quiet"] = HostSettings{Watch: false}
	h := newHarness(t, s)
	h.cpu("quiet", 0, 99)
	h.cpu("quiet", 1, 99)
	h.tick(500)
	h.expect("muted")
	if as := h.e.Alerts(AlertFilter{Host: "quiet", MinLevel: threshold.Critical}); len(as) != 1 {
		t.Errorf("muted host still has its alerts listed: %+v", as)
	}
}

func TestProfilesRTTNagiosAndGenericMatching(t *testing.T) {
	s := Settings{
		Thresholds: threshold.Spec{
			"cpu_monitor":   {"cpu_percent": {Warning: fp(80), Critical: fp(90)}},
			"nagios_runner": {"status_code": {Operator: sp("nagios"), Display: sp("{check_name}: {output}")}},
			"rtt":           {"web": {Warning: fp(100), Critical: fp(500)}},
			"disk_monitor":  {"partitions./.percent": {Warning: fp(80)}},
		},
		Profiles: map[string]threshold.Spec{
			"tight_cpu": {"cpu_monitor": {"cpu_percent": {Warning: fp(60), Critical: fp(75)}}},
		},
		Hosts: map[string]HostSettings{"db": {ThresholdConfig: []string{"tight_cpu"}, Watch: true}},
	}
	h := newHarness(t, s)
	obs := func(host, plugin string, f map[string]any, rtt time.Duration) {
		t.Helper()
		if err := h.e.Observe(h.ctx, Observation{Host: host, Plugin: plugin, Fields: f, RTT: rtt}); err != nil {
			t.Fatal(err)
		}
	}
	obs("db", "cpu_monitor", map[string]any{"cpu_percent": 70.0}, 0)
	obs("web", "cpu_monitor", map[string]any{"cpu_percent": 70.0}, 0)
	h.expect("profile", "db cpu_monitor.cpu_percent OK->WARNING")
	obs("web", "", nil, 200*time.Millisecond)
	h.expect("rtt", "web rtt OK->WARNING")
	if got := h.box.take(); len(got) != 0 {
		t.Fatal(got)
	}
	obs("web", "nagios_runner", map[string]any{"check_http_status_code": 2, "check_http_output": "HTTP CRITICAL: 503"}, 0)
	n := h.box.last()
	if n.Field != "check_http_status_code" || n.Level != "CRITICAL" || n.Text != "web CRITICAL: check_http: HTTP CRITICAL: 503" {
		t.Errorf("nagios notification %+v", n)
	}
	h.box.take()
	obs("web", "disk_monitor", map[string]any{"partitions": map[string]any{"/": map[string]any{"percent": 85.5}}}, 0)
	h.expect("nested", "web disk_monitor.partitions./.percent OK->WARNING")
	samples, ok := h.e.History("web", "disk_monitor.partitions./.percent", time.Time{})
	if !ok || len(samples) != 1 || samples[0].Value != 85.5 {
		t.Errorf("history %v %v", samples, ok)
	}
	if r, ok := h.e.History("web", "rtt", time.Time{}); !ok || r[0].Value != 200 {
		t.Errorf("rtt history %v", r)
	}

	bad := s
	bad.Hosts = map[string]HostSettings{"db": {ThresholdConfig: []string{"nope"}}}
	if err := h.e.Reload(bad); err == nil || !strings.Contains(err.Error(), "tight_cpu") {
		t.Errorf("reload with an unknown profile: %v", err)
	}
	obs("db", "cpu_monitor", map[string]any{"cpu_percent": 76.0}, 0)
	h.expect("old config kept", "db cpu_monitor.cpu_percent WARNING->CRITICAL")
}

func TestHostModel(t *testing.T) {
	s := Settings{SamplesPerField: 4, MaxHosts: 2}
	h := newHarness(t, s)
	for i := 0; i < 10; i++ {
		now := h.c.Set(time.Duration(i) * time.Second)
		addr := "10.0.0.1:5000"
		if i >= 5 {
			addr = "10.0.0.2:5000"
		}
		src := "vm"
		if i == 9 {
			src = "hbc"
		}
		if err := h.e.Observe(h.ctx, Observation{Host: "a", Source: src, Time: now, Address: addr, Plugin: "memory_monitor",
			Fields: map[string]any{"percent": float64(i), "note": "text"}, RTT: time.Duration(10+i) * time.Millisecond, Interval: 5 * time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	hi, ok := h.e.Host("a")
	if !ok {
		t.Fatal("no host")
	}
	if len(hi.Addresses) != 2 || hi.Addresses[1].Address != "10.0.0.2" || !hi.Addresses[1].Since.Equal(t0.Add(5*time.Second)) {
		t.Errorf("addresses %+v", hi.Addresses)
	}
	if hi.Source != "hbc" || strings.Join(hi.Sources, ",") != "vm,hbc" {
		t.Errorf("sources %q %v", hi.Source, hi.Sources)
	}
	if !hi.FirstSeen.Equal(t0) || !hi.LastSeen.Equal(t0.Add(9*time.Second)) || hi.Reach != Up {
		t.Errorf("seen %v %v reach %v", hi.FirstSeen, hi.LastSeen, hi.Reach)
	}
	if hi.Interval != 5*time.Second || hi.RTT != 19*time.Millisecond || hi.RTTSmoothed <= 10*time.Millisecond || hi.RTTSmoothed >= 19*time.Millisecond {
		t.Errorf("interval %v rtt %v srtt %v", hi.Interval, hi.RTT, hi.RTTSmoothed)
	}
	if hi.Plugins["memory_monitor"]["note"] != "text" {
		t.Errorf("plugin data %v", hi.Plugins)
	}
	hist, _ := h.e.History("a", "memory_monitor.percent", time.Time{})
	if len(hist) != 4 || hist[0].Value != 6 || hist[3].Value != 9 {
		t.Errorf("ring %v, want the last 4 samples oldest first", hist)
	}
	hist, _ = h.e.History("a", "memory_monitor.percent", t0.Add(8*time.Second))
	if len(hist) != 2 {
		t.Errorf("since: %v", hist)
	}
	if f := h.e.Fields("a"); strings.Join(f, ",") != "memory_monitor.percent,rtt" {
		t.Errorf("fields %v", f)
	}
	if err := h.e.Observe(h.ctx, Observation{Host: "b"}); err != nil {
		t.Fatal(err)
	}
	if err := h.e.Observe(h.ctx, Observation{Host: "c"}); !errors.Is(err, ErrTooManyHosts) {
		t.Errorf("third host: %v", err)
	}
	if err := h.e.Observe(h.ctx, Observation{}); err == nil {
		t.Error("nameless observation accepted")
	}
	if got := len(h.e.Hosts()); got != 2 {
		t.Errorf("%d hosts", got)
	}
}

// memStore is an in-memory Store for the engine's restore test; the SQLite
// store has its own tests.
type memStore struct {
	hosts    map[string]HostRecord
	alerts   map[alert.Key]alert.State
	silences map[string]alert.Silence
}

func (m *memStore) SaveHost(_ context.Context, h HostRecord) error { m.hosts[h.Name] = h; return nil }
func (m *memStore) SaveAlert(_ context.Context, s alert.State) error {
	m.alerts[s.Key] = s
	return nil
}
func (m *memStore) DeleteAlert(_ context.Context, k alert.Key) error { delete(m.alerts, k); return nil }
func (m *memStore) SaveSilence(_ context.Context, s alert.Silence) error {
	m.silences[s.ID] = s
	return nil
}
func (m *memStore) DeleteSilence(_ context.Context, id string) error {
	delete(m.silences, id)
	return nil
}
func (m *memStore) Load(context.Context) (Snapshot, error) {
	var s Snapshot
	for _, h := range m.hosts {
		s.Hosts = append(s.Hosts, h)
	}
	for _, a := range m.alerts {
		s.Alerts = append(s.Alerts, a)
	}
	for _, x := range m.silences {
		s.Silences = append(s.Silences, x)
	}
	return s, nil
}

func TestRestoreFromStore(t *testing.T) {
	st := &memStore{hosts: map[string]HostRecord{}, alerts: map[alert.Key]alert.State{}, silences: map[string]alert.Silence{}}
	s := cpuSettings()
	h := newHarness(t, s, func(o *Options) { o.Store = st })
	h.cpu("web", 0, 95)
	h.cpu("web", 10, 95)
	h.expect("alert", "web cpu_monitor.cpu_percent OK->CRITICAL")
	k := alert.Key{Host: "web", Plugin: "cpu_monitor", Field: "cpu_percent"}
	if err := h.e.Acknowledge(h.ctx, k, "alice", "known", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.e.AddSilence(h.ctx, alert.Silence{ID: "s1", Host: "db", End: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// A new engine on the same store, an hour and a half later.
	h2 := newHarness(t, s, func(o *Options) { o.Store = st })
	h2.c.Set(90 * time.Minute)
	h2.e.started = h2.c.Now()
	if err := h2.e.Load(h2.ctx); err != nil {
		t.Fatal(err)
	}
	as := h2.e.Alerts(AlertFilter{})
	if len(as) != 1 || as[0].Level != alert.Critical || as[0].Ack == nil || as[0].Ack.By != "alice" {
		t.Fatalf("restored alerts %+v", as)
	}
	if sil := h2.e.Silences(); len(sil) != 1 || sil[0].ID != "s1" {
		t.Errorf("restored silences %+v", sil)
	}
	// The restored host is given an interval to report before it is overdue.
	h2.tick(90*60 + 5)
	h2.expect("grace after restart")
	h2.cpu("web", 90*60+6, 95)
	h2.tick(90*60 + 7)
	h2.expect("acknowledged: no renotify after restart")
	h2.cpu("web", 90*60+20, 10)
	h2.expect("recovery", "web cpu_monitor.cpu_percent CRITICAL->OK")
}

// TestRestoredDownHostStaysDown: after a restart, a host stored as down
// (and notified) is not declared up, and no recovery is sent, until it
// reports; without a report it stays down.
func TestRestoredDownHostStaysDown(t *testing.T) {
	st := &memStore{hosts: map[string]HostRecord{}, alerts: map[alert.Key]alert.State{}, silences: map[string]alert.Silence{}}
	s := cpuSettings()
	s.Interval = 10 * time.Second
	h := newHarness(t, s, func(o *Options) { o.Store = st })
	h.cpu("web", 0, 10)
	h.cpu("db", 0, 10)
	h.tick(100)
	h.expect("both down", "db reachability OK->CRITICAL", "web reachability OK->CRITICAL")
	if st.hosts["web"].Reach != Down {
		t.Fatalf("stored reach %v", st.hosts["web"].Reach)
	}
	h2 := newHarness(t, s, func(o *Options) { o.Store = st })
	h2.c.Set(200 * time.Second)
	h2.e.started = h2.c.Now()
	if err := h2.e.Load(h2.ctx); err != nil {
		t.Fatal(err)
	}
	h2.tick(201)
	h2.tick(205)
	h2.expect("no recovery without a report")
	h2.cpu("web", 206, 10)
	h2.expect("web reports", "web reachability CRITICAL->OK")
	for sec := 210; sec < 300; sec += 5 {
		h2.tick(sec)
	}
	h2.expect("db still down, web in time")
	if hi, _ := h2.e.Host("db"); hi.Reach != Down {
		t.Errorf("db reach %v, want down", hi.Reach)
	}
	if err := h2.e.RemoveHost(h2.ctx, "db"); err != nil {
		t.Fatal(err)
	}
	if _, ok := h2.e.Host("db"); ok {
		t.Error("removed host still there")
	}
	if err := h2.e.RemoveHost(h2.ctx, "db"); !errors.Is(err, ErrNoHost) {
		t.Errorf("second remove: %v", err)
	}
}

func TestConfiguredHostsNaNAndStats(t *testing.T) {
	s := cpuSettings()
	h := newHarness(t, s)
	hi, ok := h.e.Host("db")
	if !ok || hi.Reach != Unknown || hi.Owner != "bob" {
		t.Fatalf("configured host: %v %+v", ok, hi)
	}
	h.tick(3600)
	h.expect("a configured host never heard from is unknown, not down")
	now := h.c.Set(3601 * time.Second)
	nan := math.NaN()
	if err := h.e.Observe(h.ctx, Observation{Host: "web", Time: now, Plugin: "cpu_monitor",
		Fields: map[string]any{"cpu_percent": nan, "cpu_user": math.Inf(1), "cpu_system": 3.0}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.e.History("web", "cpu_monitor.cpu_percent", time.Time{}); ok {
		t.Error("NaN sampled")
	}
	if as := h.e.Alerts(AlertFilter{Host: "web", All: true}); len(as) != 1 || as[0].Key.Plugin != alert.ReachabilityPlugin {
		t.Errorf("NaN evaluated: %+v", as)
	}
	st := h.e.Stats()
	if st.Observations != 1 || st.Samples != 1 || st.Hosts != 2 || st.Notifications != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestConcurrentUse drives the engine from several goroutines at once (run
// with -race): sources, the ticker, readers and acknowledgements.
func TestConcurrentUse(t *testing.T) {
	s := cpuSettings()
	s.Renotify = time.Second
	e, err := New(Options{Settings: s, Notifier: &inbox{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				host := fmt.Sprintf("h%d", (g+i)%5)
				if err := e.Observe(ctx, Observation{Host: host, Plugin: "cpu_monitor", Fields: map[string]any{"cpu_percent": float64((i * 7) % 100)}}); err != nil {
					t.Error(err)
					return
				}
				if i%50 == 0 {
					_ = e.MarkStopped(ctx, host, "test")
				}
			}
		}(g)
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			if err := e.Tick(ctx, time.Now()); err != nil {
				t.Error(err)
			}
			_, _ = e.AddSilence(ctx, alert.Silence{ID: "s", Host: "h1", End: time.Now().Add(time.Second)})
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			for _, h := range e.Hosts() {
				_, _ = e.History(h.Name, "cpu_monitor.cpu_percent", time.Time{})
				for _, a := range h.Alerts {
					if a.Level != alert.OK {
						_ = e.Acknowledge(ctx, a.Key, "t", "", time.Time{})
					}
				}
			}
			_ = e.Alerts(AlertFilter{All: true})
			_ = e.Stats()
		}
	}()
	wg.Wait()
	if st := e.Stats(); st.Observations != 1200 || st.Hosts != 6 {
		t.Errorf("stats %+v", st)
	}
}

// TestRuleRemovedEndsAlert: when a reload drops the rule of an alert that
// was notified, the next sample ends it with a recovery saying why; an
// alert nobody heard of is dropped quietly.
func TestRuleRemovedEndsAlert(t *testing.T) {
	st := &memStore{hosts: map[string]HostRecord{}, alerts: map[alert.Key]alert.State{}, silences: map[string]alert.Silence{}}
	s := cpuSettings()
	s.Thresholds["memory_monitor"] = map[string]threshold.RuleSpec{"percent": {Warning: fp(50), Count: ip(5)}}
	h := newHarness(t, s, func(o *Options) { o.Store = st })
	h.cpu("web", 0, 95)
	h.cpu("web", 1, 95)
	h.expect("alert", "web cpu_monitor.cpu_percent OK->CRITICAL")
	now := h.c.Set(2 * time.Second)
	if err := h.e.Observe(h.ctx, Observation{Host: "web", Time: now, Plugin: "memory_monitor", Fields: map[string]any{"percent": 60.0}}); err != nil {
		t.Fatal(err)
	}
	s2 := cpuSettings()
	s2.Thresholds = threshold.Spec{}
	if err := h.e.Reload(s2); err != nil {
		t.Fatal(err)
	}
	h.cpu("web", 3, 95)
	h.expect("rule gone", "web cpu_monitor.cpu_percent CRITICAL->OK")
	if n := h.box.ns; len(n) != 0 {
		t.Fatal(n)
	}
	now = h.c.Set(4 * time.Second)
	if err := h.e.Observe(h.ctx, Observation{Host: "web", Time: now, Plugin: "memory_monitor", Fields: map[string]any{"percent": 60.0}}); err != nil {
		t.Fatal(err)
	}
	h.expect("pending alert dropped quietly")
	if as := h.e.Alerts(AlertFilter{Host: "web", All: true}); len(as) != 1 || as[0].Key.Plugin != alert.ReachabilityPlugin {
		t.Errorf("alerts left %+v", as)
	}
	for k := range st.alerts {
		if k.Plugin != alert.ReachabilityPlugin {
			t.Errorf("stored alert left: %v", k)
		}
	}
}

// TestNotifiedBeforeStateSaved: the Notifier (which writes the durable
// outbox) gets a notification before the alert state recording that it
// was sent is saved, so a crash between the two repeats the notification
// after the restart instead of losing it.
func TestNotifiedBeforeStateSaved(t *testing.T) {
	st := &memStore{hosts: map[string]HostRecord{}, alerts: map[alert.Key]alert.State{}, silences: map[string]alert.Silence{}}
	var problems []string
	notifier := NotifierFunc(func(_ context.Context, n Notification) {
		saved := st.alerts[alert.Key{Host: n.Host, Plugin: n.Plugin, Field: n.Field}]
		if saved.Notified.String() == n.Level && !n.Recovery {
			problems = append(problems, fmt.Sprintf("%s %s: the store already says it was notified", n.Host, n.Level))
		}
	})
	e, err := New(Options{Settings: cpuSettings(), Store: st, Notifier: notifier, Clock: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []float64{10, 85, 95} {
		if err := e.Observe(context.Background(), Observation{Host: "web", Plugin: "cpu_monitor", Fields: map[string]any{"cpu_percent": v}}); err != nil {
			t.Fatal(err)
		}
	}
	if k := (alert.Key{Host: "web", Plugin: "cpu_monitor", Field: "cpu_percent"}); st.alerts[k].Notified != alert.Critical {
		t.Fatalf("stored state %+v, want notified CRITICAL", st.alerts[k])
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// TestReachabilityFlapping: a VM that crashes and comes back every few
// seconds sends at most one reachability notification per renotify window
// after the first pair, while a real outage after the host was up for a
// while (the calm period: ten intervals with grace, at least 5 minutes) is
// told at once.
func TestReachabilityFlapping(t *testing.T) {
	s := cpuSettings()
	s.Interval = 20 * time.Second
	s.Renotify = time.Hour
	h := newHarness(t, s)
	down := func(sec int) {
		h.t.Helper()
		h.c.Set(time.Duration(sec) * time.Second)
		if err := h.e.MarkDown(h.ctx, "vm1", "crashed"); err != nil {
			t.Fatal(err)
		}
	}
	h.cpu("vm1", 0, 10)
	down(100)
	h.expect("first outage", "vm1 reachability OK->CRITICAL")
	h.cpu("vm1", 120, 10)
	h.expect("back up", "vm1 reachability CRITICAL->OK")
	// Up for 30 minutes, reporting every 20 s.
	for sec := 140; sec <= 120+1800; sec += 20 {
		h.cpu("vm1", sec, 10)
		h.tick(sec)
	}
	down(1930)
	h.expect("a second real outage, within the renotify window", "vm1 reachability OK->CRITICAL")
	h.cpu("vm1", 1940, 10)
	h.expect("back up again", "vm1 reachability CRITICAL->OK")
	// Flapping: down and up every 5 s for two hours, with ticks.
	var got []string
	start := 2000
	for sec := start; sec < start+7200; sec += 10 {
		down(sec)
		h.tick(sec + 1)
		h.cpu("vm1", sec+5, 10)
		h.tick(sec + 6)
		got = append(got, h.box.take()...)
	}
	if len(got) > 2 {
		t.Errorf("%d notifications in two hours of flapping (at most one per hour wanted): %q", len(got), got)
	}
	// It settles: up for good; the damped recovery goes out within a
	// window, and a calm period later an outage is news again.
	end := start + 7200
	for sec := end; sec < end+2*3600; sec += 20 {
		h.cpu("vm1", sec, 10)
		h.tick(sec)
	}
	h.box.take()
	hi, _ := h.e.Host("vm1")
	for _, a := range hi.Alerts {
		if a.Key.Plugin == alert.ReachabilityPlugin && (a.Notified != alert.OK || a.Flapping) {
			t.Fatalf("after settling: %+v", a)
		}
	}
	down(end + 2*3600)
	h.expect("an outage after the flapping settled", "vm1 reachability OK->CRITICAL")
}

// TestTickAfterRemoveHost: Tick keeps checking every host that is left
// after hosts are removed (the engine keeps them in a list too).
func TestTickAfterRemoveHost(t *testing.T) {
	s := cpuSettings()
	s.Interval = 10 * time.Second
	h := newHarness(t, s)
	for _, name := range []string{"a", "b", "c", "d"} {
		h.cpu(name, 0, 10)
	}
	for _, name := range []string{"a", "c"} {
		if err := h.e.RemoveHost(h.ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	h.tick(100)
	h.expect("the hosts left go down", "b reachability OK->CRITICAL", "d reachability OK->CRITICAL")
	if got := len(h.e.Hosts()); got != 3 { // b, d and the configured db
		t.Errorf("%d hosts", got)
	}
}

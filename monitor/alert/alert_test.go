package alert

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/monitor/threshold"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func at(min float64) time.Time { return t0.Add(time.Duration(min * float64(time.Minute))) }

// step is one event of a scenario: a sample (obs) or a tick, at a minute.
type step struct {
	min      float64
	tick     bool  // a tick (Reconcile) instead of a sample
	raw      Level // the sample's level
	silenced bool
	held     bool
	muted    bool
	ack      *Ack // acknowledge before this step
	want     Kind
	wantPrev Level // checked when want != None
}

func run(t *testing.T, name string, count int, steps []step) State {
	t.Helper()
	s := State{Key: Key{"web", "cpu_monitor", "cpu_percent"}}
	for i, st := range steps {
		if st.ack != nil {
			var err error
			if s, err = Acknowledge(s, *st.ack); err != nil {
				t.Fatalf("%s: step %d: acknowledge: %v", name, i, err)
			}
		}
		env := Env{Now: at(st.min), Renotify: time.Hour, Silenced: st.silenced, Held: st.held, Muted: st.muted}
		var d Decision
		if st.tick {
			s, d = Reconcile(s, env)
		} else {
			s, d = Observe(s, st.raw, count, 0, "", env)
		}
		if d.Kind != st.want {
			t.Fatalf("%s: step %d (min %v, raw %v): decision %v, want %v (state %+v)", name, i, st.min, st.raw, d.Kind, st.want, s)
		}
		if d.Kind != None && d.Previous != st.wantPrev {
			t.Fatalf("%s: step %d: previous %v, want %v", name, i, d.Previous, st.wantPrev)
		}
		if d.Kind != None && d.Level != s.Level {
			t.Fatalf("%s: step %d: decision level %v, state level %v", name, i, d.Level, s.Level)
		}
	}
	return s
}

func TestTransitions(t *testing.T) {
	cases := []struct {
		name  string
		count int
		steps []step
	}{
		{"OK->WARNING->CRITICAL->OK", 0, []step{
			{min: 0, raw: OK},
			{min: 1, raw: Warning, want: Alert, wantPrev: OK},
			{min: 2, raw: Critical, want: Alert, wantPrev: Warning},
			{min: 3, raw: OK, want: Recovery, wantPrev: Critical},
		}},
		{"OK->CRITICAL", 0, []step{
			{min: 0, raw: Critical, want: Alert, wantPrev: OK},
		}},
		{"CRITICAL->WARNING is quiet, re-escalation notifies", 0, []step{
			{min: 0, raw: Critical, want: Alert, wantPrev: OK},
			{min: 1, raw: Warning},
			{min: 2, raw: Warning},
			{min: 70, raw: Critical, want: Alert, wantPrev: Warning},
			{min: 71, raw: Warning},
			{min: 72, raw: OK, want: Recovery, wantPrev: Warning},
		}},
		{"WARNING->OK is a recovery", 0, []step{
			{min: 0, raw: Warning, want: Alert, wantPrev: OK},
			{min: 5, raw: OK, want: Recovery, wantPrev: Warning},
			{min: 6, raw: OK},
		}},
		{"UNKNOWN from OK alerts, back to OK recovers", 0, []step{
			{min: 0, raw: Unknown, want: Alert, wantPrev: OK},
			{min: 1, raw: Unknown},
			{min: 2, raw: Critical, want: Alert, wantPrev: Unknown},
			{min: 3, raw: OK, want: Recovery, wantPrev: Critical},
		}},
		{"count 3", 3, []step{
			{min: 0, raw: Critical},
			{min: 1, raw: Critical},
			{min: 2, raw: Critical, want: Alert, wantPrev: OK},
			{min: 3, raw: OK, want: Recovery, wantPrev: Critical},
			{min: 4, raw: Warning},
			{min: 5, raw: OK},
			{min: 6, raw: Warning},
		}},
		{"renotify every hour until acknowledged", 0, []step{
			{min: 0, raw: Warning, want: Alert, wantPrev: OK},
			{min: 30, tick: true},
			{min: 59.9, raw: Warning},
			{min: 60, tick: true, want: Renotify, wantPrev: Warning},
			{min: 61, tick: true},
			{min: 120, raw: Warning, want: Renotify, wantPrev: Warning},
			{min: 121, raw: Warning, ack: &Ack{By: "alice", At: at(121)}},
			{min: 500, tick: true},
			{min: 501, raw: OK, want: Recovery, wantPrev: Warning},
		}},
		{"ack with expiry", 0, []step{
			{min: 0, raw: Warning, want: Alert, wantPrev: OK},
			{min: 10, tick: true, ack: &Ack{By: "bob", Comment: "looking", At: at(10), Until: at(120)}},
			{min: 60, tick: true},
			{min: 119, tick: true},
			{min: 120, tick: true, want: Renotify, wantPrev: Warning},
		}},
		{"escalation ends an ack and notifies", 0, []step{
			{min: 0, raw: Warning, want: Alert, wantPrev: OK},
			{min: 1, raw: Warning, ack: &Ack{By: "bob", At: at(1)}},
			{min: 2, raw: Critical, want: Alert, wantPrev: Warning},
			{min: 62, tick: true, want: Renotify, wantPrev: Critical},
		}},
		{"silence holds notifications, releases what is due", 0, []step{
			{min: 0, raw: Warning, silenced: true},
			{min: 1, raw: Critical, silenced: true},
			{min: 30, tick: true, silenced: true},
			{min: 31, tick: true, want: Alert, wantPrev: OK},
			{min: 40, raw: OK, silenced: true},
			{min: 50, tick: true, want: Recovery, wantPrev: Critical},
		}},
		{"an episode wholly inside a silence sends nothing", 0, []step{
			{min: 0, raw: Critical, silenced: true},
			{min: 5, raw: OK, silenced: true},
			{min: 10, tick: true},
		}},
		{"topology hold", 0, []step{
			{min: 0, raw: Warning, held: true},
			{min: 1, tick: true, held: true},
			{min: 2, raw: OK, held: true},
			{min: 3, tick: true},
			{min: 4, raw: Critical, want: Alert, wantPrev: OK},
			{min: 5, tick: true, held: true},
			{min: 90, tick: true, held: true},
			{min: 91, raw: Critical, want: Renotify, wantPrev: Critical},
		}},
		{"acknowledged while silenced: no alert after the silence", 0, []step{
			{min: 0, raw: Critical, silenced: true},
			{min: 1, tick: true, silenced: true, ack: &Ack{By: "alice", At: at(1)}},
			{min: 2, tick: true},
			{min: 200, tick: true},
			{min: 201, raw: OK},
		}},
		{"acknowledged while held, the ack expires: the alert goes out", 0, []step{
			{min: 0, raw: Warning, held: true},
			{min: 1, tick: true, held: true, ack: &Ack{By: "alice", At: at(1), Until: at(30)}},
			{min: 29, tick: true},
			{min: 30, tick: true, want: Alert, wantPrev: OK},
		}},
		{"watch: false mutes", 0, []step{
			{min: 0, raw: Critical, muted: true},
			{min: 100, tick: true, muted: true},
		}},
	}
	for _, tc := range cases {
		run(t, tc.name, tc.count, tc.steps)
	}
}

// TestFlapDamping: a value oscillating around a threshold with hysteresis 0
// sends at most one notification per renotify window after the first
// alert and its recovery.
func TestFlapDamping(t *testing.T) {
	rule := threshold.Rule{Warning: 80, HasWarning: true}
	s := State{Key: Key{"web", "cpu_monitor", "cpu_percent"}}
	var sent []time.Time
	for m := 0; m < 6*60; m++ {
		v := 79.0
		if m%2 == 1 {
			v = 81
		}
		now := at(float64(m))
		var d Decision
		s, d = Observe(s, rule.Level(v, s.Level), 0, v, "", Env{Now: now, Renotify: time.Hour})
		if d.Notify() {
			sent = append(sent, now)
		}
	}
	if len(sent) < 2 {
		t.Fatalf("flapping sent %d notifications, want the first alert and more", len(sent))
	}
	// After the first alert and its recovery, no two notifications fall
	// within one hour of each other.
	for i := 2; i < len(sent); i++ {
		if gap := sent[i].Sub(sent[i-1]); gap < time.Hour {
			t.Errorf("notifications %d and %d only %v apart: %v", i-1, i, gap, sent)
		}
	}
	if n := len(sent); n > 2+6 {
		t.Errorf("%d notifications in 6 hours of flapping: %v", n, sent)
	}
	if !s.Flapping {
		t.Error("state not marked flapping")
	}
	// Once it settles, the recovery still goes out, and a window of calm
	// ends the flapping.
	for m := 6 * 60; m < 9*60; m++ {
		s, _ = Observe(s, rule.Level(50, s.Level), 0, 50, "", Env{Now: at(float64(m)), Renotify: time.Hour})
	}
	if s.Notified != OK || s.Flapping {
		t.Errorf("after settling: notified %v flapping %v", s.Notified, s.Flapping)
	}
}

// A genuine escalation inside the damping window still goes out.
func TestFlapDampingLetsEscalationThrough(t *testing.T) {
	run(t, "escalation", 0, []step{
		{min: 0, raw: Warning, want: Alert, wantPrev: OK},
		{min: 1, raw: OK, want: Recovery, wantPrev: Warning},
		{min: 2, raw: Warning},
		{min: 3, raw: OK},
		{min: 4, raw: Critical, want: Alert, wantPrev: OK},
	})
}

func TestAcknowledge(t *testing.T) {
	s := State{}
	if _, err := Acknowledge(s, Ack{By: "a", At: t0}); !errors.Is(err, ErrNotActive) {
		t.Errorf("ack of OK alert: %v", err)
	}
	s.Level = Warning
	if _, err := Acknowledge(s, Ack{By: "a", At: t0, Until: t0}); err == nil {
		t.Error("ack with expiry at its own time accepted")
	}
	s, err := Acknowledge(s, Ack{By: "a", At: t0, Until: t0.Add(time.Hour)})
	if err != nil || !s.Ack.Active(t0) || s.Ack.Active(t0.Add(time.Hour)) {
		t.Errorf("ack: %v %+v", err, s.Ack)
	}
	if Unacknowledge(s).Ack != nil {
		t.Error("unacknowledge kept the ack")
	}
}

func TestSilences(t *testing.T) {
	sil := []Silence{
		{ID: "1", Host: "web-*", Start: at(0), End: at(120)},
		{ID: "2", Host: "db", Plugin: "disk_monitor", Field: "partitions./*.percent", Start: at(0), End: at(60)},
	}
	cases := []struct {
		k    Key
		min  float64
		want bool
	}{
		{Key{"web-01", "cpu_monitor", "cpu_percent"}, 10, true},
		{Key{"web-01", ReachabilityPlugin, ""}, 10, true},
		{Key{"web-01", "cpu_monitor", "cpu_percent"}, 120, false},
		{Key{"web-01", "cpu_monitor", "cpu_percent"}, -1, false},
		{Key{"db", "disk_monitor", "partitions./var/lib.percent"}, 30, true},
		{Key{"db", "disk_monitor", "partitions./.free_gb"}, 30, false},
		{Key{"db", "cpu_monitor", "cpu_percent"}, 30, false},
		{Key{"dbx", "disk_monitor", "partitions./.percent"}, 30, false},
	}
	for _, tc := range cases {
		if got := Silenced(sil, tc.k, at(tc.min)); got != tc.want {
			t.Errorf("Silenced(%v, min %v) = %v, want %v", tc.k, tc.min, got, tc.want)
		}
	}
	bad := []Silence{
		{Host: "x", End: at(1)},
		{ID: "a", Host: "x"},
		{ID: "a", Host: "x", Start: at(2), End: at(1)},
		{ID: "a", Start: at(0), End: at(1)},
	}
	for i, s := range bad {
		if s.Validate() == nil {
			t.Errorf("bad silence %d validated", i)
		}
	}
	good := Silence{ID: "a", Host: "*", Start: at(0), End: at(1)}
	if err := good.Validate(); err != nil {
		t.Error(err)
	}
}

func TestGlob(t *testing.T) {
	cases := []struct {
		p, n string
		want bool
	}{
		{"", "x", true}, {"*", "", true}, {"web", "web", true}, {"web", "web1", false},
		{"w?b", "wab", true}, {"*.percent", "partitions./.percent", true},
		{"a*b*c", "aXbYc", true}, {"a*b*c", "aXbY", false}, {"*x", "xxxy", false},
	}
	for _, tc := range cases {
		if got := Glob(tc.p, tc.n); got != tc.want {
			t.Errorf("Glob(%q, %q) = %v", tc.p, tc.n, got)
		}
	}
}

// TestFlapDampingTable: how many notifications oscillating values and
// reachability get, per renotify window (1 h), with and without a calm
// period shorter than the window (the engine's reachability setting).
func TestFlapDampingTable(t *testing.T) {
	type event struct {
		sec   int
		level Level
	}
	// flap alternates level and OK every period seconds for total seconds.
	flap := func(from, total, period int, level Level) []event {
		var out []event
		for s, i := from, 0; s < from+total; s, i = s+period, i+1 {
			l := OK
			if i%2 == 0 {
				l = level
			}
			out = append(out, event{s, l})
		}
		return out
	}
	cat := func(parts ...[]event) []event {
		var out []event
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	cases := []struct {
		name   string
		calm   time.Duration
		events []event
		// want lists the notifications sent, as "sec:kind".
		want []string
		// maxPerWindow bounds the notifications in any hour after the
		// first alert and its recovery (0: not checked).
		maxPerWindow int
		// wantLast is the last notification, when set.
		wantLast string
	}{
		{
			name:   "value oscillating every 10 s, hysteresis 0: the first alert and recovery, then one per window",
			events: flap(0, 3*3600, 10, Warning),
			// After the first pair, alerts at each window's end while
			// the value is up; recoveries are damped as well.
			maxPerWindow: 1,
		},
		{
			name:         "host down and up every 5 s for 3 h, calm 5 min: no storm",
			calm:         5 * time.Minute,
			events:       flap(0, 3*3600, 5, Critical),
			maxPerWindow: 1,
		},
		{
			name:   "a real outage, up 30 min, a second outage: with a calm of 5 min it is told at once",
			calm:   5 * time.Minute,
			events: []event{{0, Critical}, {600, OK}, {600 + 1800, Critical}, {600 + 1800 + 300, OK}},
			want:   []string{"0:alert", "600:recovery", "2400:alert", "2700:recovery"},
		},
		{
			name:   "the same without a calm period: flapping, told when the window ends",
			events: []event{{0, Critical}, {600, OK}, {600 + 1800, Critical}, {4200, Critical}},
			want:   []string{"0:alert", "600:recovery", "4200:alert"},
		},
		{
			name:   "a second outage an hour after the first: told at once either way",
			events: []event{{0, Critical}, {300, OK}, {3900, Critical}, {4200, OK}},
			want:   []string{"0:alert", "300:recovery", "3900:alert", "4200:recovery"},
		},
		{
			name:     "down and up every 5 s for 10 min, then up 20 min, then a real outage: told at once",
			calm:     5 * time.Minute,
			events:   cat(flap(0, 600, 5, Critical), []event{{600, OK}, {1800, OK}, {1800 + 1200, Critical}}),
			wantLast: "3000:alert",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := State{Key: Key{"web", ReachabilityPlugin, ""}}
			var got []string
			var times []int
			for _, ev := range c.events {
				var d Decision
				s, d = Observe(s, ev.level, 0, 0, "", Env{Now: t0.Add(time.Duration(ev.sec) * time.Second), Renotify: time.Hour, Calm: c.calm})
				if d.Notify() {
					got = append(got, fmt.Sprintf("%d:%s", ev.sec, d.Kind))
					times = append(times, ev.sec)
				}
			}
			if c.want != nil && strings.Join(got, " ") != strings.Join(c.want, " ") {
				t.Errorf("sent %v, want %v", got, c.want)
			}
			if c.maxPerWindow > 0 {
				if len(got) < 3 || got[0] != "0:alert" || !strings.HasSuffix(got[1], ":recovery") {
					t.Fatalf("sent %v: want the first alert, its recovery and later notifications", got)
				}
				for i := 2; i < len(times); i++ {
					n := 0
					for j := i; j < len(times) && times[j] < times[i]+3600; j++ {
						n++
					}
					if n > c.maxPerWindow {
						t.Errorf("%d notifications within an hour from %ds: %v", n, times[i], got)
					}
				}
				if len(got) > 2+3 {
					t.Errorf("%d notifications in 3 hours: %v", len(got), got)
				}
			}
			if c.wantLast != "" && (len(got) == 0 || got[len(got)-1] != c.wantLast) {
				t.Errorf("sent %v, want the last to be %s", got, c.wantLast)
			}
		})
	}
}

package qemu

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/mbvm/mb/vmhost"
)

// stubAgent is a guestAgent whose liveness the test sets.
type stubAgent struct {
	guestAgent
	responsive bool
}

func (a stubAgent) Responsive() bool                   { return a.responsive }
func (a stubAgent) Shutdown(ctx context.Context) error { return nil }

func TestPlan(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return start.Add(d) }
	type want struct {
		name  string
		until time.Time
	}
	tests := []struct {
		name    string
		agent   guestAgent
		mode    string
		timeout time.Duration
		want    []want
	}{
		// 30 s: SIGKILL keeps the last 2 s, quit the 5 s before.
		{"auto without agent", nil, vmhost.ModeAuto, 30 * time.Second,
			[]want{{"acpi", at(23 * time.Second)}, {"quit", at(28 * time.Second)}, {"kill", at(30 * time.Second)}}},
		{"auto with a responsive agent", stubAgent{responsive: true}, vmhost.ModeAuto, 30 * time.Second,
			[]want{{"agent", at(12 * time.Second)}, {"acpi", at(23 * time.Second)}, {"quit", at(28 * time.Second)}, {"kill", at(30 * time.Second)}}},
		{"auto with a silent agent", stubAgent{responsive: false}, vmhost.ModeAuto, 30 * time.Second,
			[]want{{"acpi", at(23 * time.Second)}, {"quit", at(28 * time.Second)}, {"kill", at(30 * time.Second)}}},
		{"short timeout keeps a fifth for quit and a tenth for kill", nil, vmhost.ModeAuto, 10 * time.Second,
			[]want{{"acpi", at(7 * time.Second)}, {"quit", at(9 * time.Second)}, {"kill", at(10 * time.Second)}}},
		{"single phase gets the whole timeout", nil, vmhost.ModeACPI, 7 * time.Second,
			[]want{{"acpi", at(7 * time.Second)}}},
		{"kill", nil, vmhost.ModeKill, 7 * time.Second,
			[]want{{"kill", at(7 * time.Second)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Controller{log: slog.New(slog.DiscardHandler), agent: tt.agent}
			got := c.plan(tt.mode, start, tt.timeout)
			if len(got) != len(tt.want) {
				t.Fatalf("plan has %d steps, want %d", len(got), len(tt.want))
			}
			for i, w := range tt.want {
				if got[i].phase.name != w.name || !got[i].until.Equal(w.until) {
					t.Errorf("step %d = %s until +%s, want %s until +%s", i, got[i].phase.name, got[i].until.Sub(start), w.name, w.until.Sub(start))
				}
			}
		})
	}
}

// Every plan ends within its timeout, SIGKILL included, and gives SIGKILL
// some time of its own.
func TestPlanEndsWithinTimeout(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := &Controller{log: slog.New(slog.DiscardHandler), agent: stubAgent{responsive: true}}
	for _, timeout := range []time.Duration{800 * time.Millisecond, 2 * time.Second, 4 * time.Second, 9 * time.Second, 29 * time.Second, 5 * time.Minute} {
		for _, mode := range []string{vmhost.ModeAuto, vmhost.ModeAgent, vmhost.ModeACPI, vmhost.ModeQuit, vmhost.ModeKill} {
			steps := c.plan(mode, start, timeout)
			last := steps[len(steps)-1]
			if last.until.After(start.Add(timeout)) {
				t.Errorf("%s within %s: the last step (%s) ends at +%s, after the timeout", mode, timeout, last.phase.name, last.until.Sub(start))
			}
			if mode == vmhost.ModeAuto {
				prev := steps[len(steps)-2]
				if last.phase.name != vmhost.ModeKill || !last.until.After(prev.until) {
					t.Errorf("auto within %s: SIGKILL gets no time of its own: %s until +%s after %s until +%s", timeout, last.phase.name, last.until.Sub(start), prev.phase.name, prev.until.Sub(start))
				}
			}
		}
	}
}

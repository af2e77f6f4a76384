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
		{"auto without agent", nil, vmhost.ModeAuto, 30 * time.Second,
			[]want{{"acpi", at(25 * time.Second)}, {"quit", at(30 * time.Second)}, {"kill", at(30*time.Second + killWait)}}},
		{"auto with a responsive agent", stubAgent{responsive: true}, vmhost.ModeAuto, 30 * time.Second,
			[]want{{"agent", at(12 * time.Second)}, {"acpi", at(25 * time.Second)}, {"quit", at(30 * time.Second)}, {"kill", at(30*time.Second + killWait)}}},
		{"auto with a silent agent", stubAgent{responsive: false}, vmhost.ModeAuto, 30 * time.Second,
			[]want{{"acpi", at(25 * time.Second)}, {"quit", at(30 * time.Second)}, {"kill", at(30*time.Second + killWait)}}},
		{"short timeout keeps a fifth for quit", nil, vmhost.ModeAuto, 10 * time.Second,
			[]want{{"acpi", at(8 * time.Second)}, {"quit", at(10 * time.Second)}, {"kill", at(10*time.Second + killWait)}}},
		{"single phase gets the whole timeout", nil, vmhost.ModeACPI, 7 * time.Second,
			[]want{{"acpi", at(7 * time.Second)}}},
		{"kill", nil, vmhost.ModeKill, 7 * time.Second,
			[]want{{"kill", at(killWait)}}},
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

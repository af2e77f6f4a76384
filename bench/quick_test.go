package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/bench/rig"
)

// TestQuickBench runs the whole benchmark in quick mode (BENCH_QUICK=1
// sizes) and checks that its output is complete and sane: every row of
// every part is present with a number or an explicit reason, the numbers
// are finite and positive where they must be, and results.json and
// RESULTS.md are written and readable. With MB_REQUIRE_VM=1 every row must
// carry a number. Timings are never asserted.
func TestQuickBench(t *testing.T) {
	if testing.Short() {
		t.Skip("quick benchmark boots VMs; skipped with -short")
	}
	cfg := configFromEnv()
	if !cfg.quick {
		t.Setenv("BENCH_QUICK", "1")
		cfg = configFromEnv()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	rep, err := run(ctx, cfg, log)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	out := t.TempDir()
	if err := rep.write(out); err != nil {
		t.Fatalf("write: %v", err)
	}

	var want []string
	for _, p := range allParts() {
		for _, d := range p.rows {
			want = append(want, d.id)
		}
	}
	got := map[string]Row{}
	for _, r := range rep.Rows {
		if _, dup := got[r.ID]; dup {
			t.Errorf("row %s appears twice", r.ID)
		}
		got[r.ID] = r
	}
	if len(rep.Rows) != len(want) {
		t.Errorf("%d rows, want %d", len(rep.Rows), len(want))
	}
	for _, id := range want {
		r, ok := got[id]
		if !ok {
			t.Errorf("row %s missing", id)
			continue
		}
		checkRow(t, r)
		if rig.RequireVM() && !r.Measured() {
			t.Errorf("%s=1 but row %s was not measured: %s", rig.RequireVMEnv, id, r.NotMeasured)
		}
	}
	// The control-plane part needs only vmhost, which always builds here.
	for _, id := range want {
		if strings.HasPrefix(id, "control.") && !got[id].Measured() {
			t.Errorf("control-plane row %s not measured: %s", id, got[id].NotMeasured)
		}
	}
	if rep.Revision == "" || rep.Revision == "unknown" {
		t.Errorf("the report names no git revision: %q", rep.Revision)
	}
	if rep.Machine.Cores <= 0 || rep.Machine.MemoryBytes == 0 || rep.Machine.CPUModel == "" {
		t.Errorf("machine description incomplete: %+v", rep.Machine)
	}

	data, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatalf("results.json is not valid: %v", err)
	}
	if len(back.Rows) != len(rep.Rows) || !back.Quick {
		t.Errorf("results.json has %d rows (quick=%v), want %d (quick)", len(back.Rows), back.Quick, len(rep.Rows))
	}
	md, err := os.ReadFile(filepath.Join(out, "RESULTS.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Rows {
		if !strings.Contains(string(md), mdEscape(r.Name)) {
			t.Errorf("RESULTS.md lacks row %q", r.Name)
		}
	}
	if !strings.Contains(string(md), rep.Machine.CPUModel) {
		t.Errorf("RESULTS.md does not name the CPU %q", rep.Machine.CPUModel)
	}
	t.Logf("quick benchmark:\n%s", rep.Markdown())
}

// checkRow checks one row: a number with a consistent spread, or a reason.
func checkRow(t *testing.T, r Row) {
	t.Helper()
	if r.Part == "" || r.Name == "" || r.Unit == "" {
		t.Errorf("row %s lacks part, name or unit: %+v", r.ID, r)
	}
	if !r.Measured() {
		if strings.TrimSpace(r.NotMeasured) == "" {
			t.Errorf("row %s has neither a number nor a reason", r.ID)
		}
		return
	}
	if r.NotMeasured != "" {
		t.Errorf("row %s has a number and a reason %q", r.ID, r.NotMeasured)
	}
	m := *r.Median
	if math.IsNaN(m) || math.IsInf(m, 0) {
		t.Errorf("row %s: median %v", r.ID, m)
	}
	// A ratio of medians is checked against its per-pair spread with a
	// rounding margin.
	eps := 1e-9 * math.Abs(m)
	if r.Min == nil || r.Max == nil || *r.Min > m+eps || m > *r.Max+eps || r.Runs < 1 {
		t.Errorf("row %s: spread %v–%v around %v over %d runs is inconsistent", r.ID, deref(r.Min), deref(r.Max), m, r.Runs)
	}
	// Everything is a positive quantity except the naive memory figure
	// (any sign), and these, which may be zero: CPU shares (an idle process
	// can take no clock tick in a short quick-mode window), datagrams lost
	// (none is the target) and TCG's code cache (zero under KVM).
	switch r.ID {
	case "density.qemu_rss_minus_guest":
	case "agent.cpu", "agent.cpu.poll", "fleetagent.heartbeat.cpu", "fleetagent.register.cpu",
		"fleet.udp_loss", "density.qemu_code":
		if m < 0 {
			t.Errorf("row %s: %v %s is negative", r.ID, m, r.Unit)
		}
	default:
		if m <= 0 {
			t.Errorf("row %s: %v %s is not positive", r.ID, m, r.Unit)
		}
	}
	if r.ID == "agent.cpu" && (m < 0 || m > 100*float64(8)) {
		t.Errorf("row %s: %v%% is not a CPU share", r.ID, m)
	}
	if r.Target != "" && r.Verdict == "" {
		t.Errorf("row %s has target %s but no verdict", r.ID, r.Target)
	}
}

func deref(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

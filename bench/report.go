package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Row is one line of the results table: one measured quantity, or the
// reason it was not measured.
type Row struct {
	ID   string `json:"id"`
	Part string `json:"part"`
	Name string `json:"name"`
	Unit string `json:"unit"`
	// Median, Min and Max summarise Samples (one value per run).
	Median  *float64  `json:"median,omitempty"`
	Min     *float64  `json:"min,omitempty"`
	Max     *float64  `json:"max,omitempty"`
	Runs    int       `json:"runs"`
	Samples []float64 `json:"samples,omitempty"`
	// Target is the goal from the design ("<= 1.05"). Verdict is "met"
	// when the whole 95% confidence interval of the median (CILow to
	// CIHigh, bootstrapped from the samples) is on the target's side,
	// "not met" when it is wholly on the other, and "inconclusive" when
	// the noise is larger than the difference or there are fewer than
	// three runs.
	Target  string   `json:"target,omitempty"`
	Verdict string   `json:"verdict,omitempty"`
	CILow   *float64 `json:"ci_low,omitempty"`
	CIHigh  *float64 `json:"ci_high,omitempty"`
	// NotMeasured says why there is no number.
	NotMeasured string `json:"not_measured,omitempty"`
	Note        string `json:"note,omitempty"`
}

// Measured reports whether the row has a number.
func (r Row) Measured() bool { return r.Median != nil }

// Machine describes where the benchmark ran.
type Machine struct {
	CPUModel    string `json:"cpu_model"`
	Cores       int    `json:"cores"`
	MemoryBytes uint64 `json:"memory_bytes"`
	Accelerator string `json:"accelerator"`
	Kernel      string `json:"kernel"`
	QEMU        string `json:"qemu,omitempty"`
	Go          string `json:"go"`
	// LoadStart and LoadEnd are the 1-minute load averages when the run
	// began and ended: other work on the machine shows here.
	LoadStart float64 `json:"load_start"`
	LoadEnd   float64 `json:"load_end"`
}

// Report is the whole run, as written to results.json.
type Report struct {
	Date time.Time `json:"date"`
	// Revision is the git revision the run measured (git describe), with
	// Dirty set when the work tree had uncommitted changes.
	Revision        string  `json:"revision"`
	Dirty           bool    `json:"dirty"`
	Quick           bool    `json:"quick"`
	DurationSeconds float64 `json:"duration_seconds"`
	Machine         Machine `json:"machine"`
	Rows            []Row   `json:"rows"`
}

// target is a goal a row's median is checked against.
type target struct {
	op    string // "<" or "<="
	value float64
}

func (t *target) String() string {
	if t == nil {
		return ""
	}
	return fmt.Sprintf("%s %g", t.op, t.value)
}

func (t *target) met(v float64) bool {
	if t.op == "<" {
		return v < t.value
	}
	return v <= t.value
}

// rowDef declares a row before its part runs, so a part that cannot run
// still lists every row it would have produced.
type rowDef struct {
	id, name, unit string
	target         *target
	note           string
}

// results collects the rows of one part.
type results struct {
	part string
	defs []rowDef
	rows map[string]*Row
}

func newResults(part string, defs []rowDef) *results {
	r := &results{part: part, defs: defs, rows: map[string]*Row{}}
	for _, d := range defs {
		r.rows[d.id] = &Row{ID: d.id, Part: part, Name: d.name, Unit: d.unit, Target: d.target.String(), Note: d.note}
	}
	return r
}

// set records a row's samples (one per run) and summarises them.
func (r *results) set(id string, samples []float64) {
	row, ok := r.rows[id]
	if !ok {
		panic("bench: undeclared row " + id)
	}
	var clean []float64
	for _, s := range samples {
		if !math.IsNaN(s) && !math.IsInf(s, 0) {
			clean = append(clean, s)
		}
	}
	if len(clean) == 0 {
		row.NotMeasured = "no valid sample"
		return
	}
	med, lo, hi := median(clean), quantile(clean, 0), quantile(clean, 1)
	row.Median, row.Min, row.Max = &med, &lo, &hi
	row.Runs, row.Samples, row.NotMeasured = len(clean), clean, ""
	r.judge(id, clean)
}

// Verdicts of a row with a target.
const (
	VerdictMet          = "met"
	VerdictNotMet       = "not met"
	VerdictInconclusive = "inconclusive"
)

// judge gives a row with a target its verdict from the samples the
// median comes from: the bootstrapped 95% interval of their median must lie
// wholly on one side of the target for "met" or "not met".
func (r *results) judge(id string, samples []float64) {
	var t *target
	for _, d := range r.defs {
		if d.id == id {
			t = d.target
		}
	}
	row := r.rows[id]
	if t == nil || row.Median == nil {
		return
	}
	if len(samples) < 3 {
		row.Verdict = VerdictInconclusive
		return
	}
	lo, hi := bootstrapMedianCI(samples, 0.95)
	row.CILow, row.CIHigh = &lo, &hi
	switch {
	case t.met(hi):
		row.Verdict = VerdictMet
	case !t.met(lo):
		row.Verdict = VerdictNotMet
	default:
		row.Verdict = VerdictInconclusive
	}
}

// setRatio records a ratio of medians (mb's median over the baseline's)
// with the spread of the per-pair ratios, and judges the target on the
// per-pair ratios: each pair ran back to back, so their ratio cancels the
// load both sides shared.
func (r *results) setRatio(id string, ratioOfMedians float64, pairRatios []float64) {
	r.set(id, []float64{ratioOfMedians})
	row := r.rows[id]
	if row.Median == nil || len(pairRatios) == 0 {
		return
	}
	lo, hi := quantile(pairRatios, 0), quantile(pairRatios, 1)
	row.Min, row.Max, row.Runs, row.Samples = &lo, &hi, len(pairRatios), pairRatios
	row.Verdict, row.CILow, row.CIHigh = "", nil, nil
	r.judge(id, pairRatios)
}

// note appends a remark to a row.
func (r *results) note(id, format string, args ...any) {
	row := r.rows[id]
	if row.Note != "" {
		row.Note += "; "
	}
	row.Note += fmt.Sprintf(format, args...)
}

// notMeasured marks a row as not measured, keeping an earlier reason.
func (r *results) notMeasured(id, reason string) {
	if row := r.rows[id]; !row.Measured() && row.NotMeasured == "" {
		row.NotMeasured = reason
	}
}

// finish gives every row still without a number the reason, and returns
// the rows in declaration order.
func (r *results) finish(reason string) []Row {
	out := make([]Row, 0, len(r.defs))
	for _, d := range r.defs {
		row := r.rows[d.id]
		if !row.Measured() && row.NotMeasured == "" {
			row.NotMeasured = reason
		}
		out = append(out, *row)
	}
	return out
}

func formatNum(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.1f", v)
	case a >= 10:
		return fmt.Sprintf("%.2f", v)
	case a >= 1:
		return fmt.Sprintf("%.3f", v)
	}
	return fmt.Sprintf("%.4f", v)
}

// Markdown renders the table.
func (rep *Report) Markdown() string {
	var b strings.Builder
	b.WriteString("| part | measure | median | spread (min–max) | runs | target | met |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, r := range rep.Rows {
		name := r.Name
		if r.Note != "" {
			name += " (" + r.Note + ")"
		}
		if !r.Measured() {
			fmt.Fprintf(&b, "| %s | %s | not measured: %s | | | %s | |\n", r.Part, mdEscape(name), mdEscape(shorten(r.NotMeasured, 160)), r.Target)
			continue
		}
		spread := ""
		if r.Runs > 1 {
			spread = formatNum(*r.Min) + "–" + formatNum(*r.Max)
		}
		met := r.Verdict
		if r.CILow != nil && r.CIHigh != nil {
			met += " (95% CI " + formatNum(*r.CILow) + "–" + formatNum(*r.CIHigh) + ")"
		}
		fmt.Fprintf(&b, "| %s | %s | %s %s | %s | %d | %s | %s |\n", r.Part, mdEscape(name),
			formatNum(*r.Median), r.Unit, spread, r.Runs, r.Target, met)
	}
	return b.String()
}

// shorten cuts a reason for the table; results.json keeps it whole.
func shorten(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

func mdEscape(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

// MachineMarkdown describes the machine in one paragraph.
func (m Machine) Markdown() string {
	q := m.QEMU
	if q == "" {
		q = "not found"
	}
	return fmt.Sprintf("%s, %d cores, %.1f GiB memory, accelerator %s, Linux %s, %s, %s; load average %.1f at the start, %.1f at the end",
		m.CPUModel, m.Cores, float64(m.MemoryBytes)/(1<<30), m.Accelerator, m.Kernel, q, m.Go, m.LoadStart, m.LoadEnd)
}

// write stores results.json and RESULTS.md in dir.
func (rep *Report) write(dir string) error {
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results.json: %w", err)
	}
	mode := "full run"
	if rep.Quick {
		mode = "quick run (BENCH_QUICK=1: one run per part, small sizes; not for quoting)"
	}
	rev := rep.Revision
	if rep.Dirty {
		rev += " with uncommitted changes"
	}
	md := fmt.Sprintf("# mb benchmark results\n\nDate: %s (%s, %.0f s), revision %s.\n\nMachine: %s.\n\n"+
		"Both sides of every comparison run alternately in the same run; medians with the min–max spread over the runs. "+
		"A target is met only when the 95%% confidence interval of the median (bootstrapped from the runs; for ratios, from the per-pair ratios) "+
		"lies wholly on its side; inconclusive when the interval straddles it or there are fewer than 3 runs. "+
		"Generated by `make bench` (`go run ./bench`), which also writes results.json beside this file; method in docs/notes/bench.md.\n\n%s",
		rep.Date.UTC().Format("2006-01-02 15:04 UTC"), mode, rep.DurationSeconds, rev, rep.Machine.Markdown(), rep.Markdown())
	if err := os.WriteFile(filepath.Join(dir, "RESULTS.md"), []byte(md), 0o644); err != nil {
		return fmt.Errorf("write RESULTS.md: %w", err)
	}
	return nil
}

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
	// Target is the goal from the design ("<= 1.05"), Met whether the
	// median reaches it.
	Target string `json:"target,omitempty"`
	Met    *bool  `json:"met,omitempty"`
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
	Date            time.Time `json:"date"`
	Quick           bool      `json:"quick"`
	DurationSeconds float64   `json:"duration_seconds"`
	Machine         Machine   `json:"machine"`
	Rows            []Row     `json:"rows"`
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
	for _, d := range r.defs {
		if d.id == id && d.target != nil {
			m := d.target.met(med)
			row.Met = &m
		}
	}
}

// setSummary records a row whose spread is given explicitly (for example a
// ratio of medians with the spread of the per-pair ratios).
func (r *results) setSummary(id string, med, lo, hi float64, runs int) {
	r.set(id, []float64{med})
	row := r.rows[id]
	if row.Median != nil {
		row.Min, row.Max, row.Runs, row.Samples = &lo, &hi, runs, nil
	}
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
		met := ""
		if r.Met != nil {
			met = "no"
			if *r.Met {
				met = "yes"
			}
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
	md := fmt.Sprintf("# mb benchmark results\n\nDate: %s (%s, %.0f s).\n\nMachine: %s.\n\n"+
		"Both sides of every comparison run alternately in the same run; medians with the min–max spread over the runs. "+
		"Generated by `make bench` (`go run ./bench`); method in docs/notes/bench.md.\n\n%s",
		rep.Date.UTC().Format("2006-01-02 15:04 UTC"), mode, rep.DurationSeconds, rep.Machine.Markdown(), rep.Markdown())
	if err := os.WriteFile(filepath.Join(dir, "RESULTS.md"), []byte(md), 0o644); err != nil {
		return fmt.Errorf("write RESULTS.md: %w", err)
	}
	return nil
}

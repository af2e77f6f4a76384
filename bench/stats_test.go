package main

import (
	"math"
	"strings"
	"testing"

	"github.com/mbvm/mb/internal/layout"
)

func TestQuantile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	if got := median(xs); got != 3 {
		t.Errorf("median = %v, want 3", got)
	}
	if got := quantile(xs, 0); got != 1 {
		t.Errorf("min = %v", got)
	}
	if got := quantile(xs, 1); got != 5 {
		t.Errorf("max = %v", got)
	}
	if got := median([]float64{1, 2, 3, 10}); got != 2.5 {
		t.Errorf("even median = %v, want 2.5", got)
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is not NaN")
	}
	if xs[0] != 5 {
		t.Error("quantile sorted its input in place")
	}
}

func TestResultsRows(t *testing.T) {
	r := newResults("p", []rowDef{
		{id: "a", name: "A", unit: "ms", target: &target{"<", 1}},
		{id: "b", name: "B", unit: "ms"},
		{id: "c", name: "C", unit: "ms"},
	})
	r.set("a", []float64{0.5, 2, 0.7, math.NaN()})
	r.set("b", []float64{math.Inf(1)})
	rows := r.finish("because")
	if len(rows) != 3 {
		t.Fatalf("%d rows", len(rows))
	}
	a := rows[0]
	if !a.Measured() || *a.Median != 0.7 || *a.Min != 0.5 || *a.Max != 2 || a.Runs != 3 || a.Verdict != VerdictInconclusive {
		t.Errorf("row a = %+v", a)
	}
	if rows[1].Measured() || rows[1].NotMeasured != "no valid sample" {
		t.Errorf("row b = %+v", rows[1])
	}
	if rows[2].Measured() || rows[2].NotMeasured != "because" {
		t.Errorf("row c = %+v", rows[2])
	}
	md := (&Report{Rows: rows}).Markdown()
	if !strings.Contains(md, "not measured: because") || !strings.Contains(md, "| 0.7000 ms | 0.5000–2.000 | 3 | < 1 | inconclusive (95% CI 0.5000–2.000) |") {
		t.Errorf("markdown:\n%s", md)
	}
}

func TestFilesUnder(t *testing.T) {
	got := filesUnder("if=none,id=disk0,file=/v/d/disk.qcow2,format=qcow2", "/v/d")
	if len(got) != 1 || got[0] != "disk.qcow2" {
		t.Errorf("filesUnder = %v", got)
	}
	if got := filesUnder("socket,id=qmp,path=/v/d/qmp.sock,server=on", "/v/d"); len(got) != 1 || got[0] != layout.QMPSocket {
		t.Errorf("filesUnder = %v", got)
	}
	if got := filesUnder("/other/x", "/v/d"); len(got) != 0 {
		t.Errorf("filesUnder = %v", got)
	}
}

func TestStatusKB(t *testing.T) {
	v, err := statusKB("Name:\tmb-agent\nVmRSS:\t    5120 kB\n", "VmRSS:")
	if err != nil || v != 5120*1024 {
		t.Errorf("statusKB = %v, %v", v, err)
	}
	if _, err := statusKB("Name: x\n", "VmRSS:"); err == nil {
		t.Error("no error for a missing line")
	}
}

// A target is met or missed only with confidence: samples wholly under or
// over it decide, samples straddling it or too few runs are inconclusive,
// however the median falls.
func TestVerdicts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		samples []float64
		want    string
	}{
		{"clearly under", []float64{0.10, 0.12, 0.11, 0.13, 0.12, 0.11, 0.10}, VerdictMet},
		{"clearly over", []float64{1.5, 1.6, 1.4, 1.55, 1.7, 1.45}, VerdictNotMet},
		{"median under, noise over", []float64{0.2, 0.9, 0.95, 1.8, 2.5, 0.4}, VerdictInconclusive},
		{"one run", []float64{0.1}, VerdictInconclusive},
	} {
		r := newResults("p", []rowDef{{id: "x", name: "X", unit: "ms", target: &target{"<", 1}}})
		r.set("x", tc.samples)
		if got := r.rows["x"].Verdict; got != tc.want {
			t.Errorf("%s: verdict %q, want %q (CI %v-%v)", tc.name, got, tc.want, deref(r.rows["x"].CILow), deref(r.rows["x"].CIHigh))
		}
	}
	// A ratio is judged on its per-pair ratios, not on the ratio of medians.
	r := newResults("p", []rowDef{{id: "ratio", name: "R", unit: "×", target: &target{"<=", 1.05}}})
	r.setRatio("ratio", 0.96, []float64{0.6, 1.4, 0.9, 1.3, 0.7, 1.2})
	if got := r.rows["ratio"].Verdict; got != VerdictInconclusive {
		t.Errorf("noisy ratio with a median under the target: verdict %q, want inconclusive", got)
	}
}

func TestBareMemfd(t *testing.T) {
	got := bareMemfd("memory-backend-file,id=mem0,size=256M,mem-path=/proc/self/fd/3,share=on")
	if want := "memory-backend-memfd,id=mem0,size=256M,share=on"; got != want {
		t.Errorf("bareMemfd = %q, want %q", got, want)
	}
}

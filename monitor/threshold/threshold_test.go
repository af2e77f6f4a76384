package threshold

import (
	"math"
	"testing"
)

func f(v float64) *float64 { return &v }
func s(v string) *string   { return &v }
func n(v int) *int         { return &v }

func mustRule(t *testing.T, rs RuleSpec) *Rule {
	t.Helper()
	r, err := rs.Compile()
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return &r
}

func TestOperators(t *testing.T) {
	cases := []struct {
		op   string
		w, c float64
		v    float64
		want Level
	}{
		{"", 80, 90, 79, OK},
		{"", 80, 90, 80, OK},
		{"", 80, 90, 80.5, Warning},
		{"", 80, 90, 90, Warning},
		{"", 80, 90, 90.1, Critical},
		{">", 80, 90, 95, Critical},
		{">=", 80, 90, 80, Warning},
		{">=", 80, 90, 90, Critical},
		{"<", 10, 5, 11, OK},
		{"<", 10, 5, 10, OK},
		{"<", 10, 5, 9, Warning},
		{"<", 10, 5, 4, Critical},
		{"<=", 10, 5, 10, Warning},
		{"<=", 10, 5, 5, Critical},
		{"==", 1, 2, 1, Warning},
		{"==", 1, 2, 2, Critical},
		{"==", 1, 2, 3, OK},
		{"!=", 0, 0, 0, OK},
		{"!=", 0, 0, 3, Critical},
	}
	for _, tc := range cases {
		r := mustRule(t, RuleSpec{Warning: f(tc.w), Critical: f(tc.c), Operator: s(tc.op)})
		if got := r.Level(tc.v, OK); got != tc.want {
			t.Errorf("op %q w=%v c=%v value %v: got %v, want %v", tc.op, tc.w, tc.c, tc.v, got, tc.want)
		}
	}
}

func TestOnlyOneThreshold(t *testing.T) {
	r := mustRule(t, RuleSpec{Critical: f(90)})
	if got := r.Level(85, OK); got != OK {
		t.Errorf("critical-only at 85: %v", got)
	}
	if got := r.Level(95, OK); got != Critical {
		t.Errorf("critical-only at 95: %v", got)
	}
	r = mustRule(t, RuleSpec{Warning: f(80)})
	if got := r.Level(1e9, OK); got != Warning {
		t.Errorf("warning-only at 1e9: %v", got)
	}
	if got := r.Level(math.NaN(), OK); got != Unknown {
		t.Errorf("NaN: %v", got)
	}
}

func TestNagios(t *testing.T) {
	r := mustRule(t, RuleSpec{Operator: s("nagios")})
	for code, want := range map[float64]Level{0: OK, 1: Warning, 2: Critical, 3: Unknown, 4: Unknown, -1: Unknown} {
		if got := r.Level(code, OK); got != want {
			t.Errorf("exit %v: got %v want %v", code, got, want)
		}
		if got := r.Level(code, Critical); got != want {
			t.Errorf("exit %v from CRITICAL: got %v want %v (nagios has no hysteresis)", code, got, want)
		}
	}
}

func TestHysteresis(t *testing.T) {
	// hbd's example: critical 90, hysteresis 0.1: recover at 81.
	gt := mustRule(t, RuleSpec{Warning: f(80), Critical: f(90), Hysteresis: f(0.1)})
	lt := mustRule(t, RuleSpec{Warning: f(10), Critical: f(5), Operator: s("<"), Hysteresis: f(0.2)})
	cases := []struct {
		name string
		r    *Rule
		v    float64
		prev Level
		want Level
	}{
		{"rising past critical", gt, 90.5, OK, Critical},
		{"held critical at 85", gt, 85, Critical, Critical},
		{"held critical just above 81", gt, 81.01, Critical, Critical},
		{"critical left at 81 to warning (held above 72)", gt, 81, Critical, Warning},
		{"warning held at 75", gt, 75, Warning, Warning},
		{"warning left at 72", gt, 72, Warning, OK},
		{"from OK 85 is warning", gt, 85, OK, Warning},
		{"from OK 79 is OK", gt, 79, OK, OK},
		{"unknown prev acts as OK", gt, 79, Unknown, OK},
		{"lt critical held at 5.5", lt, 5.5, Critical, Critical},
		{"lt critical left at 6", lt, 6, Critical, Warning},
		{"lt warning held at 11.9", lt, 11.9, Warning, Warning},
		{"lt warning left at 12", lt, 12, Warning, OK},
	}
	for _, tc := range cases {
		if got := tc.r.Level(tc.v, tc.prev); got != tc.want {
			t.Errorf("%s: Level(%v, %v) = %v, want %v", tc.name, tc.v, tc.prev, got, tc.want)
		}
	}
	neg := mustRule(t, RuleSpec{Critical: f(-10), Hysteresis: f(0.5)})
	if got := neg.Level(-14, Critical); got != Critical {
		t.Errorf("negative threshold moved to -15: -14 should hold CRITICAL, got %v", got)
	}
	if got := neg.Level(-15, Critical); got != OK {
		t.Errorf("negative threshold moved to -15: -15 should recover, got %v", got)
	}
}

func TestCount(t *testing.T) {
	r := mustRule(t, RuleSpec{Warning: f(80), Critical: f(90), Count: n(3)})
	type step struct {
		v    float64
		want Level
	}
	seq := []step{
		{95, OK}, {95, OK}, {95, Critical}, // three breaches confirm
		{95, Critical},
		{85, Warning},      // de-escalation at once
		{50, OK},           // recovery at once
		{85, OK}, {50, OK}, // broken streak
		{85, OK}, {95, OK}, {91, Critical}, // mixed breaches count; the newest level is confirmed
	}
	level, streak := OK, 0
	for i, st := range seq {
		level, streak = r.Step(st.v, level, streak)
		if level != st.want {
			t.Fatalf("step %d value %v: level %v, want %v (streak %d)", i, st.v, level, st.want, streak)
		}
	}
	for _, c := range []int{0, 1} {
		r := mustRule(t, RuleSpec{Warning: f(80), Count: n(c)})
		if l, _ := r.Step(81, OK, 0); l != Warning {
			t.Errorf("count %d: first breach should alert, got %v", c, l)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	bad := []RuleSpec{
		{},
		{Warning: f(1), Operator: s("~")},
		{Warning: f(1), Hysteresis: f(1)},
		{Warning: f(1), Hysteresis: f(-0.1)},
		{Warning: f(1), Count: n(-1)},
	}
	for i, rs := range bad {
		if _, err := rs.Compile(); err == nil {
			t.Errorf("case %d: compiled, want error", i)
		}
	}
	_, err := Compile(Spec{"cpu_monitor": {"cpu_percent": {}}})
	if err == nil || err.Error() == "" {
		t.Fatal("empty rule compiled")
	}
	if want := "thresholds.cpu_monitor.cpu_percent: "; err.Error()[:len(want)] != want {
		t.Errorf("error does not name the rule: %v", err)
	}
}

func TestGenericMatching(t *testing.T) {
	set, err := Compile(Spec{
		"nagios_runner": {"status_code": {Operator: s("nagios")}},
		"disk_monitor":  {"partitions./.percent": {Warning: f(80)}, "percent": {Warning: f(95)}},
		"cpu_monitor":   {"cpu_percent": {Warning: f(80)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		plugin, field string
		ok            bool
		key, check    string
	}{
		{"nagios_runner", "status_code", true, "status_code", ""},
		{"nagios_runner", "check_disk_root_status_code", true, "status_code", "check_disk_root"},
		{"nagios_runner", "check_load_output", false, "", ""},
		{"disk_monitor", "partitions./.percent", true, "partitions./.percent", ""},
		{"disk_monitor", "partitions./data.percent", true, "percent", "partitions./data"},
		{"cpu_monitor", "cpu_user", false, "", ""},
		{"cpu_monitor", "core_cpu_percent", true, "cpu_percent", "core"},
		{"memory_monitor", "percent", false, "", ""},
		{"rtt", "web", false, "", ""},
	}
	for _, tc := range cases {
		m, ok := set.Lookup(tc.plugin, tc.field)
		if ok != tc.ok || m.Key != tc.key || m.CheckName != tc.check {
			t.Errorf("Lookup(%s, %s) = %+v %v, want key %q check %q ok %v", tc.plugin, tc.field, m, ok, tc.key, tc.check, tc.ok)
		}
	}
}

func TestProfilesLeftToRight(t *testing.T) {
	global := Spec{
		"cpu_monitor":    {"cpu_percent": {Warning: f(80), Critical: f(90), Hysteresis: f(0.1)}},
		"memory_monitor": {"percent": {Warning: f(85)}},
	}
	def := Spec{"cpu_monitor": {"cpu_percent": {Warning: f(70), Critical: f(85)}}}
	tight := Spec{
		"cpu_monitor":  {"cpu_percent": {Warning: f(60)}},
		"disk_monitor": {"partitions./.percent": {Critical: f(95)}},
	}
	set, err := Compile(global, def, tight)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := set.Lookup("cpu_monitor", "cpu_percent")
	if !ok {
		t.Fatal("cpu_percent not found")
	}
	if m.Rule.Warning != 60 || m.Rule.Critical != 85 || m.Rule.Hysteresis != 0.1 {
		t.Errorf("merged rule = %+v, want warning 60 (tight), critical 85 (default), hysteresis 0.1 (global)", *m.Rule)
	}
	if _, ok := set.Lookup("memory_monitor", "percent"); !ok {
		t.Error("global rule lost")
	}
	if _, ok := set.Lookup("disk_monitor", "partitions./.percent"); !ok {
		t.Error("profile-only rule missing")
	}
	set2, err := Compile(global, tight, def)
	if err != nil {
		t.Fatal(err)
	}
	m2, _ := set2.Lookup("cpu_monitor", "cpu_percent")
	if m2.Rule.Warning != 70 {
		t.Errorf("order reversed: warning %v, want 70", m2.Rule.Warning)
	}
	// global untouched by merging
	g, _ := Compile(global)
	if m, _ := g.Lookup("cpu_monitor", "cpu_percent"); m.Rule.Warning != 80 {
		t.Errorf("global mutated by profile merge: %v", m.Rule.Warning)
	}
}

func TestRTT(t *testing.T) {
	set, err := Compile(Spec{"rtt": {
		"web-01": {Warning: f(100), Critical: f(500)},
		"*":      {Critical: f(1000)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	r, ok := set.RTT("web-01")
	if !ok || r.Level(200, OK) != Warning {
		t.Errorf("web-01 rtt rule: %+v %v", r, ok)
	}
	r, ok = set.RTT("db-01")
	if !ok || r.Level(200, OK) != OK || r.Level(2000, OK) != Critical {
		t.Errorf("fallback rtt rule: %+v %v", r, ok)
	}
	empty, _ := Compile()
	if _, ok := empty.RTT("x"); ok {
		t.Error("empty set has an RTT rule")
	}
	var nilSet *Set
	if _, ok := nilSet.Lookup("a", "b"); ok {
		t.Error("nil set matched")
	}
}

func TestRender(t *testing.T) {
	data := map[string]any{
		"cpu_percent":       93.456,
		"cpu_core_count":    4,
		"check_http_output": "HTTP CRITICAL - timeout",
		"partitions":        map[string]any{"/": map[string]any{"percent": 91.0, "free_gb": 1.5}},
		"flat./x.y":         "flat",
		"labels":            []any{"a", "b"},
		"up":                true,
	}
	base := Vars{Value: 93.456, Threshold: 90, HasThreshold: true, Op: OpGT, MetricName: "cpu_percent", Status: Critical, Data: data}
	nag := Vars{Value: 2, Op: OpNagios, CheckName: "check_http", MetricName: "check_http_status_code", Status: Critical, Data: data}
	cases := []struct {
		tmpl string
		v    Vars
		want string
	}{
		{"CPU {cpu_percent}% (threshold: {op_symbol}{threshold_value})", base, "CPU 93.46% (threshold: >90)"},
		{"{metric_name}={value:.1f} {status}", base, "cpu_percent=93.5 CRITICAL"},
		{"{check_name}: {output}", nag, "check_http: HTTP CRITICAL - timeout"},
		{"[{status}] {op_symbol}", nag, "[CRITICAL] "},
		{"root {partitions./.percent}% free {partitions./.free_gb}G", base, "root 91% free 1.5G"},
		{"{flat./x.y} {labels} {up} {cpu_core_count}", base, "flat [\"a\",\"b\"] true 4"},
		{"{missing} and {partitions./nope.percent}", base, "{missing} and {partitions./nope.percent}"},
		{"unclosed {value", base, "unclosed {value"},
		{"{{literal}} {}", base, "{literal} {}"},
		{"{value:.x} {value:bad}", base, "93.46 {value:bad}"},
		{"{output}", base, ""},
	}
	for _, tc := range cases {
		if got := Render(tc.tmpl, &tc.v); got != tc.want {
			t.Errorf("Render(%q) = %q, want %q", tc.tmpl, got, tc.want)
		}
	}
	// nil data never crashes
	if got := Render("{x} {value}", &Vars{Value: 0.00123}); got != "{x} 0.00123" {
		t.Errorf("nil data: %q", got)
	}
}

func TestWalkAndToFloat(t *testing.T) {
	var got []string
	Walk(map[string]any{"b": 1, "a": map[string]any{"/": map[string]any{"p": 2}}}, func(p string, v any) { got = append(got, p) })
	if len(got) != 2 || got[0] != "a./.p" || got[1] != "b" {
		t.Errorf("Walk paths = %v", got)
	}
	for in, want := range map[any]float64{"3.5": 3.5, true: 1, int64(7): 7, uint32(2): 2} {
		if v, ok := ToFloat(in); !ok || v != want {
			t.Errorf("ToFloat(%#v) = %v %v", in, v, ok)
		}
	}
	if _, ok := ToFloat("abc"); ok {
		t.Error("ToFloat(abc) ok")
	}
	if l, err := ParseLevel("critical"); err != nil || l != Critical {
		t.Errorf("ParseLevel: %v %v", l, err)
	}
	if _, err := ParseLevel("bad"); err == nil {
		t.Error("ParseLevel(bad) ok")
	}
}

// BenchmarkEvaluate measures field evaluations: one rule lookup (with
// generic matching for a quarter of the fields) and one count step, the work
// the engine does per numeric field of an observation. ns/op is the cost of
// one evaluation; evals/s is reported per core.
func BenchmarkEvaluate(b *testing.B) {
	set, err := Compile(Spec{
		"cpu_monitor":    {"cpu_percent": {Warning: f(80), Critical: f(90), Hysteresis: f(0.1), Count: n(2)}},
		"memory_monitor": {"percent": {Warning: f(85), Critical: f(95)}},
		"disk_monitor":   {"partitions./.percent": {Warning: f(80), Critical: f(90)}},
		"nagios_runner":  {"status_code": {Operator: s("nagios")}},
	})
	if err != nil {
		b.Fatal(err)
	}
	fields := []struct{ plugin, field string }{
		{"cpu_monitor", "cpu_percent"},
		{"memory_monitor", "percent"},
		{"disk_monitor", "partitions./.percent"},
		{"nagios_runner", "check_disk_root_status_code"},
	}
	level, streak := OK, 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fl := fields[i&3]
		m, ok := set.Lookup(fl.plugin, fl.field)
		if !ok {
			b.Fatal("no match")
		}
		level, streak = m.Rule.Step(float64(i%100), level, streak)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "evals/s")
}

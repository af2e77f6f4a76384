package monitor

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/mbvm/mb/monitor/threshold"
)

// TestPluginDataKeptExactly: the latest report of a plugin reads back
// exactly as it came (Go types, nesting, large integers), whether it was
// kept compactly (numbers and booleans only) or as its map, and across
// reports whose fields change.
func TestPluginDataKeptExactly(t *testing.T) {
	e, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	reports := []map[string]any{
		{"cpu_percent": 12.5, "cpu_core_count": 4, "big": uint64(math.MaxUint64), "neg": int64(math.MinInt64), "f32": float32(0.1),
			"i32": int32(-3), "u32": uint32(7), "u": uint(9), "up": true,
			"partitions": map[string]any{"/": map[string]any{"percent": 50.0, "total": 1e10}, "/mnt/a.b": map[string]any{"percent": 1}}},
		{"cpu_percent": 13.0, "cpu_core_count": 4}, // fewer fields
		{"cpu_percent": 14.0, "new": 1, "partitions": map[string]any{"/": map[string]any{"percent": 51.0}}},
		{"cpu_percent": 15.0, "os": "linux"},             // a string: kept as its map
		{"cpu_percent": math.NaN(), "x": 1.0},            // NaN: kept as its map
		{"cpu_percent": 16.0, "empty": map[string]any{}}, // an empty map: kept as its map
		{"cpu_percent": 17.0},
	}
	for i, r := range reports {
		if err := e.Observe(ctx, Observation{Host: "web", Plugin: "p", Fields: r, Time: t0.Add(time.Duration(i) * time.Second)}); err != nil {
			t.Fatal(err)
		}
		hi, _ := e.Host("web")
		got := hi.Plugins["p"]
		if !reflect.DeepEqual(got, r) && !(i == 4 && got["x"] == 1.0) {
			t.Errorf("report %d reads back as\n%#v\nwant\n%#v", i, got, r)
		}
	}
	if hist, ok := e.History("web", "p.cpu_percent", time.Time{}); !ok || len(hist) != 6 {
		t.Errorf("history %v %v (the NaN is not a sample)", hist, ok)
	}
}

// TestCollectMatchesWalk: collect yields the numeric leaves threshold.Walk
// yields, in its order and with its paths.
func TestCollectMatchesWalk(t *testing.T) {
	data := map[string]any{
		"b": 1, "a": map[string]any{"z": 2.5, "y": "text", "x": map[string]any{"w": true}, "e": map[string]any{}},
		"c.d": uint64(3), "n": math.Inf(1), "s": "12",
	}
	var want []string
	threshold.Walk(data, func(path string, x any) {
		if v, ok := threshold.ToFloat(x); ok && !math.IsInf(v, 0) && !math.IsNaN(v) {
			want = append(want, fmt.Sprintf("%s=%v", path, v))
		}
	})
	leaves, compact := collect("", data, nil)
	var got []string
	for _, lf := range leaves {
		got = append(got, fmt.Sprintf("%s=%v", lf.path, lf.v))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || compact {
		t.Errorf("collect %v (compact %v), want %v and not compact", got, compact, want)
	}
	if _, compact := collect("", map[string]any{"a": 1, "b": map[string]any{"c": false}}, nil); !compact {
		t.Error("numbers and booleans are compact")
	}
}

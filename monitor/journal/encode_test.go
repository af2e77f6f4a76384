package journal

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"
)

// TestFastEncoderMatchesEncodingJSON: the fast encoder writes exactly what
// encoding/json writes, and leaves what it does not handle to it.
func TestFastEncoderMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 11, 26, 8, 0, 0, 123456789, time.UTC)
	msgs := []any{
		nil,
		"plain",
		"quote \" back \\ tab \t nl \n ctl \x01 del \x7f html <&> line \u2028 para \u2029 bad \xff utf8 é 😀",
		map[string]any{
			"ID": "PLG", "name": "web", "source": "vm", "plugin": "cpu_monitor",
			"data": map[string]any{
				"cpu_percent": 12.5, "tiny": 1e-7, "huge": 1e21, "big": 1e20, "neg": -0.000001, "zero": 0.0,
				"int": 4, "i64": int64(-9), "u64": uint64(1 << 63), "f32": float32(0.1), "f32small": float32(1e-7),
				"ok": true, "none": nil, "list": []any{1.5, "x", false, map[string]any{"b": 1, "a": 2}},
				"names": []string{"a", "b"}, "nilmap": map[string]any(nil), "partitions": map[string]any{"/": map[string]any{"percent": 50.0}},
			},
		},
		map[string]any{"until": at, "zero": time.Time{}},
		map[string]any{"x": []int{1, 2}}, // slow path
		map[string]any{"nan": math.NaN()},
	}
	for i, m := range msgs {
		e := NewEntry(at, "10.0.0.1:5000", m)
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		wantErr := enc.Encode(e)
		got, err := appendEntry(nil, &e)
		switch {
		case err == errSlowPath:
			if i < 4 {
				t.Errorf("message %d took the slow path", i)
			}
		case err != nil:
			t.Errorf("message %d: %v", i, err)
		case wantErr != nil:
			t.Errorf("message %d: encoding/json fails (%v) but the fast path wrote %s", i, wantErr, got)
		case !bytes.Equal(got, want.Bytes()):
			t.Errorf("message %d:\n got %s\nwant %s", i, got, want.Bytes())
		}
	}
}

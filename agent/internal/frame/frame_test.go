package frame

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

type event struct {
	kind Kind
	obj  string
}

func readAll(t *testing.T, in string, max int) []event {
	t.Helper()
	f := NewReader(strings.NewReader(in), max)
	var out []event
	for {
		k, b, err := f.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		out = append(out, event{k, string(b)})
	}
}

func TestReader(t *testing.T) {
	ff := string([]byte{0xFF})
	tests := []struct {
		name string
		in   string
		max  int
		want []event
	}{
		{"one", `{"execute":"guest-ping"}`, 100, []event{{Object, `{"execute":"guest-ping"}`}}},
		{"back to back", `{"a":1}{"b":[1,{"c":"}"}]}`, 100,
			[]event{{Object, `{"a":1}`}, {Object, `{"b":[1,{"c":"}"}]}`}}},
		{"garbage between", "xx\n]]{\"a\":true} 123 {\"b\":null}\n", 100,
			[]event{{Object, `{"a":true}`}, {Object, `{"b":null}`}}},
		{"escaped quote", `{"a":"x\"}{"}`, 100, []event{{Object, `{"a":"x\"}{"}`}}},
		// A request cut inside a string swallows the next one; the one
		// after that is read (the host's resync retries).
		{"half string then fresh", `{"execute":"guest-ex{"execute":"guest-ping"}{"execute":"guest-ping"}`, 100,
			[]event{{Invalid, ""}, {Object, `{"execute":"guest-ping"}`}}},
		{"half object then fresh", `{"a":{"b":1{"execute":"guest-ping"}`, 100,
			[]event{{Invalid, ""}, {Object, `{"execute":"guest-ping"}`}}},
		{"delimiter resets", `{"a":` + ff + `{"b":2}`, 100,
			[]event{{Delimiter, ""}, {Object, `{"b":2}`}}},
		{"too large", `{"a":"` + strings.Repeat("x", 200) + `"}{"b":1}`, 100,
			[]event{{TooLarge, ""}, {Object, `{"b":1}`}}},
		{"exact limit", `{"a":"xx"}`, 10, []event{{Object, `{"a":"xx"}`}}},
		{"one over limit", `{"a":"xxx"}`, 10, []event{{TooLarge, ""}}},
		{"newline in string", "{\"a\":\"x\ny\"}{\"b\":1}", 100,
			[]event{{Invalid, ""}, {Object, `{"b":1}`}}},
		{"empty containers", `{"a":[],"b":{}}`, 100, []event{{Object, `{"a":[],"b":{}}`}}},
		{"missing colon", `{"a" 1}`, 100, []event{{Invalid, ""}}},
		{"bad close", `{"a":1]`, 100, []event{{Invalid, ""}}},
		{"too deep", strings.Repeat(`{"a":`, MaxDepth+1), 1 << 20, []event{{Invalid, ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := readAll(t, tt.in, tt.max)
			if len(got) != len(tt.want) {
				t.Fatalf("events = %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("event %d = %v, want %v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestReaderObjectsAreValidJSON(t *testing.T) {
	in := `{"a":[1,2,{"b":"c"}],"d":{"e":null}}`
	got := readAll(t, in, 1000)
	if len(got) != 1 || !json.Valid([]byte(got[0].obj)) {
		t.Fatalf("got %v", got)
	}
}

func TestReaderHugeGarbageUsesNoMemory(t *testing.T) {
	// 8 MiB of garbage outside any object, then a real one.
	in := io.MultiReader(bytes.NewReader(bytes.Repeat([]byte("x"), 8<<20)), strings.NewReader(`{"ok":1}`))
	f := NewReader(in, 1024)
	k, b, err := f.Next()
	if err != nil || k != Object || string(b) != `{"ok":1}` {
		t.Fatalf("Next = %v %q %v", k, b, err)
	}
	if cap(f.buf) > 1024 {
		t.Errorf("buffer grew to %d", cap(f.buf))
	}
}

func TestReaderResumesAfterReadError(t *testing.T) {
	pr, pw := io.Pipe()
	f := NewReader(pr, 100)
	go func() {
		pw.Write([]byte(`{"a":`))
		pw.CloseWithError(errors.New("boom"))
	}()
	if _, _, err := f.Next(); err == nil || err.Error() != "boom" {
		t.Fatalf("err = %v, want boom", err)
	}
}

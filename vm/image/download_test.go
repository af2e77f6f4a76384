package image

import "testing"

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in          string
		start, size int64
		ok          bool
	}{
		{"bytes 100-199/200", 100, 200, true},
		{"bytes 0-0/1", 0, 1, true},
		{"bytes 5-9/*", 5, -1, true},
		{"bytes */200", 0, 0, false},
		{"items 1-2/3", 0, 0, false},
		{"bytes 1-2", 0, 0, false},
		{"bytes x-2/3", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tc := range tests {
		start, size, ok := parseContentRange(tc.in)
		if ok != tc.ok || (ok && (start != tc.start || size != tc.size)) {
			t.Errorf("parseContentRange(%q) = %d, %d, %v; want %d, %d, %v", tc.in, start, size, ok, tc.start, tc.size, tc.ok)
		}
	}
}

func TestNormaliseDigest(t *testing.T) {
	const d = "8efc814f52ba23a3f646af826c7cab41f179043bcfe95f5f2bbc1fc7ef7bca8b"
	for in, want := range map[string]string{"": "", d: d, "SHA256:" + d: d, " " + d + "\n": d} {
		got, err := normaliseDigest(in)
		if err != nil || got != want {
			t.Errorf("normaliseDigest(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"abc", d + "00", d[:63] + "g"} {
		if _, err := normaliseDigest(bad); err == nil {
			t.Errorf("normaliseDigest(%q) accepted", bad)
		}
	}
}

package safetext

import "testing"

func TestClean(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"web-01", 0, "web-01"},
		{"Debian GNU/Linux 12 (bookworm)", 0, "Debian GNU/Linux 12 (bookworm)"},
		{"evil\x1b]0;pwned\x07host", 0, "evil]0;pwnedhost"},
		{"a\x1b[2J\x1b[Hb", 0, "a[2J[Hb"},
		{"line1\nline2\ttab\r", 0, "line1line2tab"},
		{"c1\u009bcsi", 0, "c1csi"},
		{"abc\u202edcba", 0, "abcdcba"},
		{"bad\xffutf8", 0, "bad\ufffdutf8"},
		{"héllo wörld", 7, "héllo "},
		{"日本語", 4, "日"},
		{"", 0, ""},
	} {
		if got := Clean(tc.in, tc.max); got != tc.want {
			t.Errorf("Clean(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}

func FuzzClean(f *testing.F) {
	f.Add("evil\x1b]0;x\x07", 16)
	f.Fuzz(func(t *testing.T, s string, max int) {
		out := Clean(s, max)
		if !isClean(out) {
			t.Fatalf("Clean(%q) = %q still has control characters or bad UTF-8", s, out)
		}
		if max > 0 && len(out) > max {
			t.Fatalf("Clean(%q, %d) is %d bytes", s, max, len(out))
		}
	})
}

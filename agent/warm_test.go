package agent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestCloneHostnames(t *testing.T) {
	for _, h := range []string{"", "-x", "a b", "x;rm -rf /", strings.Repeat("a", 64), "a..b"} {
		if goodHostname(h) {
			t.Errorf("hostname %q accepted", h)
		}
	}
	for _, h := range []string{"d1", "web-2", "a.example.org"} {
		if !goodHostname(h) {
			t.Errorf("hostname %q refused", h)
		}
	}
	// An unknown argument is refused before anything changes.
	if _, err := cmdClone(context.Background(), json.RawMessage(`{"hostname":"d1","x":1}`)); err == nil {
		t.Error("mb-clone accepted an unknown argument")
	}
}

// goodHostname is checked by hand; it must agree with the RFC 1123
// grammar written as a regular expression, on every short string over an
// alphabet with each kind of character and on the length limits.
func TestGoodHostnameMatchesGrammar(t *testing.T) {
	label := `[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?`
	grammar := regexp.MustCompile(`^` + label + `(\.` + label + `)*$`)
	want := func(h string) bool { return len(h) <= 253 && grammar.MatchString(h) }
	check := func(h string) {
		if got := goodHostname(h); got != want(h) {
			t.Errorf("goodHostname(%q) = %v, the grammar says %v", h, got, !got)
		}
	}
	const alphabet = "aZ0-._ \xc3"
	var gen func(prefix string, n int)
	gen = func(prefix string, n int) {
		check(prefix)
		if n == 0 {
			return
		}
		for i := 0; i < len(alphabet); i++ {
			gen(prefix+alphabet[i:i+1], n-1)
		}
	}
	gen("", 5)
	l63, l64 := strings.Repeat("a", 63), strings.Repeat("b", 64)
	for _, h := range []string{
		l63, l64, l63 + "." + l63, l63 + "." + l64, "x-" + l63[2:], l63[1:] + "-",
		strings.Repeat(l63+".", 3) + strings.Repeat("c", 61), // 253
		strings.Repeat(l63+".", 3) + strings.Repeat("c", 62), // 254
		"é.example", "a.b.", ".a.b",
	} {
		check(h)
	}
}

func TestSetTimeNeedsATime(t *testing.T) {
	if _, err := cmdSetTime(context.Background(), json.RawMessage(`{}`)); err == nil || !strings.Contains(err.Error(), "nanoseconds") {
		t.Errorf("guest-set-time without a time: %v", err)
	}
}

func TestAddHostsEntry(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(p, []byte("127.0.0.1 localhost\n127.0.1.1 deb"), 0o644); err != nil {
		t.Fatal(err)
	}
	addHostsEntry(p, "d1")
	addHostsEntry(p, "d1")
	addHostsEntry(p, "deb")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := "127.0.0.1 localhost\n127.0.1.1 deb\n127.0.1.1 d1\n"; string(b) != want {
		t.Errorf("hosts is %q, want %q", b, want)
	}
}

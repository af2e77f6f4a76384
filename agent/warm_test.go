package agent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
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

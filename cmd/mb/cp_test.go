package main

import (
	"os/exec"
	"testing"
)

// A link may point anywhere inside the copied tree, never out of it.
func TestCopyLinkEscapes(t *testing.T) {
	for _, c := range []struct {
		name, target string
		escapes      bool
	}{
		{"top/a/l", "../b", false},
		{"top/a/l", "../../b", true},
		{"top/a/l", "../../top/b", false},
		{"top/l", "/etc/passwd", true},
		{"top/l", "../outside", true},
		{"top/l", ".", false},
	} {
		if got := escapes(c.name, c.target, "top"); got != c.escapes {
			t.Errorf("link %s -> %s: escapes %v, want %v", c.name, c.target, got, c.escapes)
		}
	}
	if _, err := mapName("../x", "top", "new"); err == nil {
		t.Errorf("mapName accepted ../x")
	}
	if got, err := mapName("top/a/b", "top", "new"); err != nil || got != "new/a/b" {
		t.Errorf("mapName(top/a/b) = %q, %v", got, err)
	}
}

// Words quoted for the remote shell reach it unchanged.
func TestShellQuote(t *testing.T) {
	for _, w := range []string{"plain", "it's", `a "b" $c`, "", "x'y'z\n$(id)"} {
		out, err := exec.Command("sh", "-c", "printf %s "+shellQuote(w)).Output()
		if err != nil || string(out) != w {
			t.Errorf("%q came back as %q, %v", w, out, err)
		}
	}
}

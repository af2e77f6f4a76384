package main

import "testing"

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

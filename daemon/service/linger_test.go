package service

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLingerHint(t *testing.T) {
	dir := t.TempDir()
	if h := lingerHint(dir, "alice"); !strings.Contains(h, "loginctl enable-linger alice") {
		t.Errorf("no linger: hint %q", h)
	}
	if err := os.WriteFile(filepath.Join(dir, "alice"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if h := lingerHint(dir, "alice"); h != "" {
		t.Errorf("linger on: hint %q, want none", h)
	}
}

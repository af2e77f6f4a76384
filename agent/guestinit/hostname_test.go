package guestinit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidHostname(t *testing.T) {
	for name, want := range map[string]bool{
		"demo":                  true,
		"vm-1.example":          true,
		"":                      false,
		"-x":                    false,
		".x":                    false,
		"a b":                   false,
		"a;reboot":              false,
		strings.Repeat("a", 64): true,
		strings.Repeat("a", 65): false,
	} {
		if got := ValidHostname(name); got != want {
			t.Errorf("ValidHostname(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestAddHostsEntry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(path, []byte("127.0.0.1\tlocalhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second call finds the name and adds nothing
		if err := addHostsEntry(path, "demo"); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := os.ReadFile(path)
	if want := "127.0.0.1\tlocalhost\n127.0.1.1\tdemo\n"; string(data) != want {
		t.Errorf("hosts = %q, want %q", data, want)
	}
	// A name that is only a prefix of an existing one is still added.
	if err := addHostsEntry(path, "dem"); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(path); !strings.Contains(string(data), "127.0.1.1\tdem\n") {
		t.Errorf("hosts lacks dem: %q", data)
	}
}

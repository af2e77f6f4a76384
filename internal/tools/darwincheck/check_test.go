package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckFindsVzMisuse feeds the checker a darwin+cgo file that calls vz
// with a wrong argument type and expects the error on that file and line for
// both architectures: proof that the cgo file is really type-checked (go vet
// with GOOS=darwin would skip it).
func TestCheckFindsVzMisuse(t *testing.T) {
	want := markedLine(t, "testdata/vzbad/vzbad.go", "// want:")
	for _, arch := range []string{"arm64", "amd64"} {
		t.Run(arch, func(t *testing.T) {
			diags, err := Check(context.Background(), Options{Dir: ".", GOOS: "darwin", GOARCH: arch, Patterns: []string{"./testdata/vzbad"}})
			if err != nil {
				t.Fatal(err)
			}
			if len(diags) != 1 {
				t.Fatalf("got %d diagnostics, want 1: %v", len(diags), diags)
			}
			d := diags[0]
			if filepath.Base(d.Pos.Filename) != "vzbad.go" || d.Pos.Line != want || !strings.Contains(d.Message, `cannot use "2"`) {
				t.Errorf("diagnostic %q: want vzbad.go:%d: cannot use \"2\"", d, want)
			}
		})
	}
}

// markedLine returns the 1-based line of file that contains marker.
func markedLine(t *testing.T, file, marker string) int {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, marker) {
			return i + 1
		}
	}
	t.Fatalf("%s has no line marked %q", file, marker)
	return 0
}

// TestCheckAcceptsCgo: a package of ours that imports "C" type-checks
// clean (the C package is faked), so cgo files are checked, not refused.
func TestCheckAcceptsCgo(t *testing.T) {
	diags, err := Check(context.Background(), Options{Dir: ".", GOOS: "darwin", GOARCH: "arm64", Patterns: []string{"./testdata/cgook"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(diags) != 0 {
		t.Fatalf("diagnostics for a valid cgo package: %v", diags)
	}
}

package repocheck

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestMakeTestIsUncached checks that every go test run of `make test` (and
// of the other test targets) has -count=1. Tests in failtest, daemon and
// cmd/mb build the binaries they drive at run time, which go test cannot
// see, so a cached "ok" there can hide a broken binary.
func TestMakeTestIsUncached(t *testing.T) {
	data, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	goTest := regexp.MustCompile(`\$\(GO\) test\b`)
	runs := 0
	for i, line := range strings.Split(string(data), "\n") {
		if !goTest.MatchString(line) || strings.Contains(line, "-fuzz=") {
			continue
		}
		runs++
		if !strings.Contains(line, "-count=1") {
			t.Errorf("Makefile:%d runs go test without -count=1: %s", i+1, strings.TrimSpace(line))
		}
	}
	if runs < 2 {
		t.Errorf("found %d go test runs in the Makefile; the pattern is out of date", runs)
	}
}

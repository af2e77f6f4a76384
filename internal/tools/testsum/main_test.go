package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCountsARealRun runs go test -json on a small module with a passing,
// a failing and a skipped test, and checks the counts, the failure's output
// and the skip's reason.
func TestCountsARealRun(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/m\n\ngo 1.22\n")
	write("m_test.go", `package m

import "testing"

func TestPass(t *testing.T) {}
func TestFail(t *testing.T) { t.Error("the reason it failed") }
func TestSkip(t *testing.T) { t.Skip("qemu is not installed") }
func TestSub(t *testing.T) { t.Run("inner", func(t *testing.T) {}) }
`)
	cmd := exec.Command("go", "test", "-json", "-count=1", ".")
	cmd.Dir = dir
	js, _ := cmd.Output() // exits 1: one test fails
	var out bytes.Buffer
	rec := filepath.Join(dir, "run.json")
	err := summarise(bytes.NewReader(js), &out, rec, "")
	if err == nil {
		t.Errorf("a run with a failing test was not reported as failed:\n%s", out.String())
	}
	got := out.String()
	for _, want := range []string{"the reason it failed", "this run: 3 passed, 1 failed, 1 skipped", "FAIL"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "TestPass") {
		t.Errorf("verbose chatter passed through:\n%s", got)
	}
	var total bytes.Buffer
	if err := addUp(&total, []string{rec, rec}, false); err == nil {
		t.Error("-total of failed runs did not fail")
	}
	if !strings.Contains(total.String(), "tests: 6 passed, 2 failed, 2 skipped") ||
		!strings.Contains(total.String(), "skipped: example.com/m TestSkip: m_test.go:7: qemu is not installed") {
		t.Errorf("-total output:\n%s", total.String())
	}
}

// TestNoSkipsFailsOnASkip checks -no-skips turns a skip into a failure, and
// that an empty stream is not taken for a pass.
func TestNoSkipsFailsOnASkip(t *testing.T) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "run.json")
	os.WriteFile(rec, []byte(`{"passed":5,"failed":0,"skipped":1,"skips":["p T: why"]}`), 0o644)
	if err := addUp(&bytes.Buffer{}, []string{rec}, false); err != nil {
		t.Errorf("a skip without -no-skips failed: %v", err)
	}
	if err := addUp(&bytes.Buffer{}, []string{rec}, true); err == nil {
		t.Error("a skip with -no-skips passed")
	}
	if err := summarise(strings.NewReader(""), &bytes.Buffer{}, filepath.Join(dir, "e.json"), ""); err == nil {
		t.Error("an empty go test stream passed")
	}
}

// A test still running when its package fails (a timeout panic) has its
// output printed: without it, a hang in make test says nothing about where.
func TestUnfinishedTestOutputIsShown(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/m\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "m_test.go"), []byte(`package m

import (
	"testing"
	"time"
)

func TestHangs(t *testing.T) { t.Log("about to hang"); time.Sleep(time.Minute) }
`), 0o644)
	cmd := exec.Command("go", "test", "-json", "-count=1", "-timeout", "2s", ".")
	cmd.Dir = dir
	js, _ := cmd.Output()
	var out bytes.Buffer
	if err := summarise(bytes.NewReader(js), &out, filepath.Join(dir, "run.json"), ""); err == nil {
		t.Error("a timed-out package was not reported as failed")
	}
	if !strings.Contains(out.String(), "about to hang") || !strings.Contains(out.String(), "UNFINISHED: TestHangs") {
		t.Errorf("the hanging test's output is missing:\n%s", out.String())
	}
}

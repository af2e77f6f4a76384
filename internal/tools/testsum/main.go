// Command testsum reads `go test -json` on standard input and prints what a
// person wants from a test run: the package result lines, the full output of
// every failed test, and at the end one line with the counts,
//
//	tests: 812 passed, 0 failed, 0 skipped
//
// followed by the name and reason of every skipped test. `make test` pipes
// each `go test` run through it and adds the runs up with -total, so the
// skip count covers the whole suite.
//
// Usage:
//
//	go test -json ./... | testsum -record run1.json [-rc FILE]
//	testsum -total [-no-skips] run1.json run2.json
//
// With -record it exits 1 when a test or a package failed, or when the
// stream held no result at all. -rc names a file holding the exit code of
// the `go test` that fed the pipe (a shell pipeline loses it), and a
// non-zero code there fails the run too. With -total it prints the
// combined line and exits 1 on any failure, or with -no-skips on any skip.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

// result is what a run adds to the total, as written with -record.
type result struct {
	Passed  int      `json:"passed"`
	Failed  int      `json:"failed"`
	Skipped int      `json:"skipped"`
	Skips   []string `json:"skips,omitempty"`
	// PackageFailures counts packages that failed outside any test (build
	// errors, a panic in TestMain, a timeout).
	PackageFailures int `json:"package_failures"`
}

func main() {
	record := flag.String("record", "", "read go test -json from stdin and write the counts to this file")
	rcFile := flag.String("rc", "", "with -record: a file holding the exit code of the go test run")
	total := flag.Bool("total", false, "add up recorded runs given as arguments")
	noSkips := flag.Bool("no-skips", false, "with -total: a skipped test fails the run")
	flag.Parse()
	var err error
	switch {
	case *record != "":
		err = summarise(os.Stdin, os.Stdout, *record, *rcFile)
	case *total:
		err = addUp(os.Stdout, flag.Args(), *noSkips)
	default:
		err = fmt.Errorf("usage: testsum -record FILE [-rc FILE] < go-test-json, or testsum -total [-no-skips] FILE...")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsum:", err)
		os.Exit(1)
	}
}

// summarise prints the run as a person reads it and records its counts.
func summarise(in io.Reader, out io.Writer, recordPath, rcPath string) error {
	var res result
	// Output of each running test, kept until it ends: printed in full on
	// failure, the last lines kept as the reason on a skip.
	pending := map[string]*strings.Builder{}
	key := func(e event) string { return e.Package + " " + e.Test }
	sawResult := false
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			// Not test2json: a build error printed by go itself.
			fmt.Fprintln(out, string(line))
			continue
		}
		switch e.Action {
		case "run":
			pending[key(e)] = &strings.Builder{}
		case "output", "build-output":
			if e.Test == "" {
				printPackageLine(out, e.Output)
				continue
			}
			if b := pending[key(e)]; b != nil {
				b.WriteString(e.Output)
			}
		case "pass", "fail", "skip":
			sawResult = true
			if e.Test == "" {
				if e.Action == "fail" {
					res.PackageFailures++
					// Tests still running when their package failed (a
					// timeout, a panic, a signal): their output says why.
					for k, b := range pending {
						if strings.HasPrefix(k, e.Package+" ") {
							fmt.Fprintf(out, "--- UNFINISHED: %s\n%s", strings.TrimPrefix(k, e.Package+" "), b.String())
							delete(pending, k)
						}
					}
				}
				continue
			}
			b := pending[key(e)]
			delete(pending, key(e))
			switch e.Action {
			case "pass":
				res.Passed++
			case "fail":
				res.Failed++
				if b != nil {
					fmt.Fprint(out, b.String())
				}
			case "skip":
				res.Skipped++
				res.Skips = append(res.Skips, fmt.Sprintf("%s %s: %s", e.Package, e.Test, skipReason(b)))
			}
		case "build-fail":
			sawResult = true
			res.PackageFailures++
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read go test output: %w", err)
	}
	rc := 0
	if rcPath != "" {
		b, err := os.ReadFile(rcPath)
		if err != nil {
			return fmt.Errorf("read the go test exit code: %w", err)
		}
		if rc, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
			return fmt.Errorf("bad exit code in %s: %q", rcPath, b)
		}
	}
	data, err := json.Marshal(res)
	if err != nil {
		return err
	}
	if err := os.WriteFile(recordPath, data, 0o644); err != nil {
		return fmt.Errorf("record the counts: %w", err)
	}
	fmt.Fprintf(out, "this run: %d passed, %d failed, %d skipped\n", res.Passed, res.Failed, res.Skipped)
	switch {
	case !sawResult:
		return fmt.Errorf("go test reported no result at all")
	case res.Failed > 0 || res.PackageFailures > 0:
		return fmt.Errorf("%d tests and %d packages failed", res.Failed, res.PackageFailures)
	case rc != 0:
		return fmt.Errorf("go test exited %d", rc)
	}
	return nil
}

// printPackageLine passes on the lines go test prints for a package as a
// whole (ok, FAIL, coverage, panics outside tests), dropping the
// per-test chatter of -json's verbose stream.
func printPackageLine(out io.Writer, s string) {
	t := strings.TrimSpace(s)
	if t == "" || t == "PASS" || strings.HasPrefix(t, "=== ") {
		return
	}
	fmt.Fprint(out, s)
}

// skipReason is the last line a skipped test printed (its t.Skip message).
func skipReason(b *strings.Builder) string {
	if b == nil {
		return "(no reason given)"
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l != "" && !strings.HasPrefix(l, "--- SKIP") {
			return l
		}
	}
	return "(no reason given)"
}

// addUp prints the combined counts of recorded runs and the skipped tests.
func addUp(out io.Writer, files []string, noSkips bool) error {
	var sum result
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("read recorded run: %w", err)
		}
		var r result
		if err := json.Unmarshal(data, &r); err != nil {
			return fmt.Errorf("recorded run %s: %w", f, err)
		}
		sum.Passed += r.Passed
		sum.Failed += r.Failed
		sum.Skipped += r.Skipped
		sum.PackageFailures += r.PackageFailures
		sum.Skips = append(sum.Skips, r.Skips...)
	}
	sort.Strings(sum.Skips)
	for _, s := range sum.Skips {
		fmt.Fprintln(out, "skipped:", s)
	}
	fmt.Fprintf(out, "tests: %d passed, %d failed, %d skipped\n", sum.Passed, sum.Failed, sum.Skipped)
	switch {
	case sum.Failed > 0 || sum.PackageFailures > 0:
		return fmt.Errorf("%d tests and %d packages failed", sum.Failed, sum.PackageFailures)
	case noSkips && sum.Skipped > 0:
		return fmt.Errorf("%d tests were skipped, and make test installs everything they need: each is a failure to fix", sum.Skipped)
	}
	return nil
}

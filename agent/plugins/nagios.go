package plugins

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Nagios statuses by exit code; any other code is UNKNOWN.
var nagiosStatus = []string{"OK", "WARNING", "CRITICAL", "UNKNOWN"}

// nagiosCheck is one configured check.
type nagiosCheck struct {
	name string
	argv []string
}

// nagiosRunner is hbc's nagios_runner: it runs Nagios-compatible checks
// (no shell) and reports each one's status, output and performance data
// as fields prefixed with the check's name.
type nagiosRunner struct {
	checks  []nagiosCheck
	timeout time.Duration
}

// newNagiosRunner validates the commands: each needs a name and a command
// whose program is an absolute path to an executable file.
func newNagiosRunner(o options) (*nagiosRunner, error) {
	raw, ok := o["commands"]
	if !ok || raw == nil {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("commands: want a list of {name, command}, got %v", raw)
	}
	timeout, err := options(o).seconds("timeout", 30*time.Second)
	if err != nil {
		return nil, err
	}
	r := &nagiosRunner{timeout: timeout}
	seen := map[string]bool{}
	for i, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("commands[%d]: want {name, command}, got %v", i, e)
		}
		name, _ := m["name"].(string)
		command, _ := m["command"].(string)
		if !validName(name) {
			return nil, fmt.Errorf("commands[%d]: name %q: use letters, digits, '_', '-' or '.'", i, name)
		}
		if seen[name] {
			return nil, fmt.Errorf("commands[%d]: the name %q is used twice", i, name)
		}
		seen[name] = true
		argv, err := splitCommand(command)
		if err != nil {
			return nil, fmt.Errorf("commands[%d] (%s): %w", i, name, err)
		}
		if err := checkExecutable(argv[0]); err != nil {
			return nil, fmt.Errorf("commands[%d] (%s): %w", i, name, err)
		}
		r.checks = append(r.checks, nagiosCheck{name: name, argv: argv})
	}
	if len(r.checks) == 0 {
		return nil, nil
	}
	return r, nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// checkExecutable refuses a program that is not an absolute path to an
// executable regular file.
func checkExecutable(path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("the program %q is not an absolute path: write it in full, such as /usr/lib/nagios/plugins/check_load", path)
	}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("the program %s: %w", path, err)
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("the program %s is not an executable file", path)
	}
	return nil
}

// splitCommand splits a command line into words on spaces, keeping single-
// or double-quoted runs together. It runs no shell: no variables, globs
// or pipes.
func splitCommand(s string) ([]string, error) {
	var (
		out   []string
		cur   strings.Builder
		quote rune
		have  bool
	)
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, have = r, true
		case r == ' ' || r == '\t':
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unbalanced %c quote in the command %q", quote, s)
	}
	if have {
		out = append(out, cur.String())
	}
	if len(out) == 0 {
		return nil, errors.New("empty command")
	}
	return out, nil
}

func (*nagiosRunner) Name() string { return "nagios_runner" }

func (r *nagiosRunner) Collect(ctx context.Context) (Fields, error) {
	f := Fields{"check_count": len(r.checks)}
	for _, c := range r.checks {
		code, out := r.run(ctx, c)
		text, perf := parseNagiosOutput(out)
		status := "UNKNOWN"
		if code >= 0 && code < len(nagiosStatus) {
			status = nagiosStatus[code]
		} else {
			code = 3
		}
		f[c.name+"_status_code"] = code
		f[c.name+"_status"] = status
		f[c.name+"_output"] = text
		for _, p := range perf {
			f[c.name+"_"+p.label] = p.value
			if p.unit != "" {
				f[c.name+"_"+p.label+"_uom"] = p.unit
			}
		}
	}
	return f, nil
}

// run runs one check and returns its exit code (3, UNKNOWN, when it could
// not run or timed out) and output.
func (r *nagiosRunner) run(ctx context.Context, c nagiosCheck) (int, string) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.argv[0], c.argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout = &limitedWriter{w: &out, n: 64 << 10}
	cmd.Stderr = cmd.Stdout
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return 3, fmt.Sprintf("UNKNOWN: %s timed out after %s", c.name, r.timeout)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &ee) && ee.Exited():
		return ee.ExitCode(), out.String()
	default:
		return 3, fmt.Sprintf("UNKNOWN: %s did not run: %v", c.name, err)
	}
}

type limitedWriter struct {
	w *bytes.Buffer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if room := l.n - l.w.Len(); room > 0 {
		l.w.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// perfValue is one performance data value.
type perfValue struct {
	label string
	value float64
	unit  string
}

// parseNagiosOutput splits a check's output into its first line of text
// and the performance data after '|' (on the first line and in the long
// output), as the Nagios plugin guidelines write them:
// 'label'=value[UOM];[warn];[crit];[min];[max]
func parseNagiosOutput(out string) (string, []perfValue) {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	text, perf, _ := strings.Cut(lines[0], "|")
	var perfs []string
	perfs = append(perfs, perf)
	for _, l := range lines[1:] {
		if _, p, ok := strings.Cut(l, "|"); ok {
			perfs = append(perfs, p)
		}
	}
	var vals []perfValue
	for _, p := range perfs {
		vals = append(vals, parsePerfdata(p)...)
	}
	return strings.TrimSpace(text), vals
}

// parsePerfdata parses space-separated label=value items; items it cannot
// read are skipped.
func parsePerfdata(s string) []perfValue {
	var out []perfValue
	for i := 0; i < len(s); {
		for i < len(s) && s[i] == ' ' {
			i++
		}
		if i >= len(s) {
			break
		}
		var label string
		if s[i] == '\'' {
			var b strings.Builder
			j := i + 1
			for j < len(s) {
				if s[j] == '\'' {
					if j+1 < len(s) && s[j+1] == '\'' {
						b.WriteByte('\'')
						j += 2
						continue
					}
					break
				}
				b.WriteByte(s[j])
				j++
			}
			label, i = b.String(), j+1
		} else {
			j := strings.IndexAny(s[i:], "= ")
			if j < 0 {
				break
			}
			label, i = s[i:i+j], i+j
		}
		if i >= len(s) || s[i] != '=' {
			// No value: skip to the next item.
			for i < len(s) && s[i] != ' ' {
				i++
			}
			continue
		}
		i++
		j := strings.IndexByte(s[i:], ' ')
		if j < 0 {
			j = len(s) - i
		}
		item := s[i : i+j]
		i += j
		v, _, _ := strings.Cut(item, ";")
		num := strings.TrimRightFunc(v, func(r rune) bool { return !(r >= '0' && r <= '9' || r == '.') })
		f, err := strconv.ParseFloat(num, 64)
		if err != nil || label == "" {
			continue
		}
		out = append(out, perfValue{label: fieldName(label), value: f, unit: v[len(num):]})
	}
	return out
}

// fieldName makes a perfdata label usable in a field name: characters
// other than letters, digits, '-' and '.' become '_', runs of '_' one, and
// '_' at the ends is dropped ("/ free" is "free"; a label with nothing left
// is "value").
func fieldName(s string) string {
	var b strings.Builder
	under := false
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' {
			if under && b.Len() > 0 {
				b.WriteByte('_')
			}
			b.WriteByte(c)
			under = false
			continue
		}
		under = true
	}
	if b.Len() == 0 {
		return "value"
	}
	return b.String()
}

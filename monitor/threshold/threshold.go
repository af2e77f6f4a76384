// Package threshold holds the monitor's threshold rules with the semantics of
// hbd (the Heartbeat Daemon): a rule per plugin and field with a warning and a
// critical threshold, a comparison operator (or the nagios exit-code mapping),
// hysteresis, a count of consecutive breaches and a display template.
//
// Everything here is a pure function of its inputs: a compiled Set is
// immutable and safe for concurrent use, and evaluating a value never
// allocates.
package threshold

import (
	"fmt"
	"math"
	"strings"
)

// Level is an alert level. The zero value is OK.
type Level uint8

// The alert levels, hbd's names.
const (
	OK Level = iota
	Warning
	Critical
	Unknown
)

// String returns hbd's upper-case name of the level.
func (l Level) String() string {
	switch l {
	case OK:
		return "OK"
	case Warning:
		return "WARNING"
	case Critical:
		return "CRITICAL"
	case Unknown:
		return "UNKNOWN"
	}
	return fmt.Sprintf("Level(%d)", uint8(l))
}

// ParseLevel reads a level name (case-insensitive).
func ParseLevel(s string) (Level, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "OK":
		return OK, nil
	case "WARNING", "WARN":
		return Warning, nil
	case "CRITICAL", "CRIT":
		return Critical, nil
	case "UNKNOWN":
		return Unknown, nil
	}
	return OK, fmt.Errorf("unknown level %q (accepted: OK, WARNING, CRITICAL, UNKNOWN)", s)
}

// Op is a comparison operator of a rule.
type Op uint8

// The operators. OpGT is the default.
const (
	OpGT     Op = iota // ">": breach when the value is above the threshold
	OpGE               // ">="
	OpLT               // "<"
	OpLE               // "<="
	OpEQ               // "=="
	OpNE               // "!="
	OpNagios           // "nagios": the value is an exit code, 0-3 mapping to OK..UNKNOWN
)

// Operators lists the accepted operator spellings, for error messages.
const Operators = `">", ">=", "<", "<=", "==", "!=", "nagios"`

// String returns the operator's symbol as written in a config.
func (o Op) String() string {
	switch o {
	case OpGT:
		return ">"
	case OpGE:
		return ">="
	case OpLT:
		return "<"
	case OpLE:
		return "<="
	case OpEQ:
		return "=="
	case OpNE:
		return "!="
	case OpNagios:
		return "nagios"
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// ParseOp reads an operator; the empty string is the default ">".
func ParseOp(s string) (Op, error) {
	switch strings.TrimSpace(s) {
	case "", ">":
		return OpGT, nil
	case ">=":
		return OpGE, nil
	case "<":
		return OpLT, nil
	case "<=":
		return OpLE, nil
	case "==", "=":
		return OpEQ, nil
	case "!=":
		return OpNE, nil
	case "nagios":
		return OpNagios, nil
	}
	return OpGT, fmt.Errorf("unknown operator %q (accepted: %s)", s, Operators)
}

// Rule is one compiled threshold rule.
type Rule struct {
	// Warning and Critical are the thresholds; HasWarning and HasCritical
	// say whether each is set (a rule may have only one of them).
	Warning, Critical       float64
	HasWarning, HasCritical bool
	// Op is the comparison; with OpNagios the thresholds are not used.
	Op Op
	// Hysteresis is a fraction: a level is left only once the value is past
	// its threshold moved by this fraction towards the safe side
	// (critical 90, hysteresis 0.1 and ">": recovery at 81 or below).
	Hysteresis float64
	// Count is the number of consecutive breaches needed before a higher
	// level is confirmed; 0 and 1 both mean at once.
	Count int
	// Display is the template of the alert text (see Render).
	Display string
}

// breaches reports whether v breaches threshold t under op.
func breaches(op Op, v, t float64) bool {
	switch op {
	case OpGT:
		return v > t
	case OpGE:
		return v >= t
	case OpLT:
		return v < t
	case OpLE:
		return v <= t
	case OpEQ:
		return v == t
	case OpNE:
		return v != t
	}
	return false
}

// moved returns threshold t moved by the hysteresis fraction h towards the
// safe side of op; equality operators have no direction and are not moved.
func moved(op Op, t, h float64) float64 {
	if h == 0 {
		return t
	}
	switch op {
	case OpGT, OpGE:
		return t - math.Abs(t)*h
	case OpLT, OpLE:
		return t + math.Abs(t)*h
	}
	return t
}

// NagiosLevel maps a nagios exit code to a level: 0 OK, 1 WARNING,
// 2 CRITICAL, anything else UNKNOWN.
func NagiosLevel(code float64) Level {
	switch code {
	case 0:
		return OK
	case 1:
		return Warning
	case 2:
		return Critical
	}
	return Unknown
}

// Level returns the level value v is at, given the level the alert is
// confirmed at now (prev), which decides where hysteresis applies: a
// threshold at or below prev is moved by the hysteresis, so the level is held
// until the value is clearly back. A NaN value is UNKNOWN.
func (r *Rule) Level(v float64, prev Level) Level {
	if math.IsNaN(v) {
		return Unknown
	}
	if r.Op == OpNagios {
		return NagiosLevel(v)
	}
	if prev == Unknown {
		prev = OK
	}
	if r.HasCritical {
		t := r.Critical
		if prev >= Critical {
			t = moved(r.Op, t, r.Hysteresis)
		}
		if breaches(r.Op, v, t) {
			return Critical
		}
	}
	if r.HasWarning {
		t := r.Warning
		if prev >= Warning {
			t = moved(r.Op, t, r.Hysteresis)
		}
		if breaches(r.Op, v, t) {
			return Warning
		}
	}
	return OK
}

// ThresholdFor returns the threshold that defines level l (for {threshold_value}),
// and whether the rule has one.
func (r *Rule) ThresholdFor(l Level) (float64, bool) {
	switch l {
	case Critical:
		return r.Critical, r.HasCritical
	case Warning:
		return r.Warning, r.HasWarning
	}
	if r.HasWarning {
		return r.Warning, true
	}
	return r.Critical, r.HasCritical
}

// Severity orders levels for escalation: OK < WARNING < UNKNOWN < CRITICAL.
func Severity(l Level) int {
	switch l {
	case OK:
		return 0
	case Warning:
		return 1
	case Unknown:
		return 2
	case Critical:
		return 3
	}
	return 0
}

// Step applies the rule's count to one new value: confirmed is the level the
// alert is confirmed at and streak the number of consecutive breaches seen
// so far above it. It returns the new confirmed level and streak. A value
// whose level is more severe than the confirmed one must repeat Count times
// in a row before it is confirmed; a return to a lower level is confirmed at
// once (hysteresis, not count, guards recoveries).
func (r *Rule) Step(v float64, confirmed Level, streak int) (Level, int) {
	raw := r.Level(v, confirmed)
	return Confirm(raw, confirmed, streak, r.Count)
}

// Confirm is the count logic of Step for a level already computed: raw is the
// level of the newest value.
func Confirm(raw, confirmed Level, streak, count int) (Level, int) {
	if Severity(raw) <= Severity(confirmed) {
		return raw, 0
	}
	streak++
	if streak >= count {
		return raw, 0
	}
	return confirmed, streak
}

package threshold

import (
	"fmt"
	"sort"
	"strings"
)

// RTTPlugin is the pseudo-plugin under which per-host round-trip-time rules
// live: thresholds.rtt.<host>, in milliseconds. The host "*" is the rule for
// hosts without their own.
const RTTPlugin = "rtt"

// RuleSpec is a rule as written in a config: every key optional, so that a
// profile can override only some keys of a rule it layers over.
type RuleSpec struct {
	Warning    *float64
	Critical   *float64
	Operator   *string
	Hysteresis *float64
	Count      *int
	Display    *string
}

// over returns s with every key set in top replacing the one in s.
func (s RuleSpec) over(top RuleSpec) RuleSpec {
	if top.Warning != nil {
		s.Warning = top.Warning
	}
	if top.Critical != nil {
		s.Critical = top.Critical
	}
	if top.Operator != nil {
		s.Operator = top.Operator
	}
	if top.Hysteresis != nil {
		s.Hysteresis = top.Hysteresis
	}
	if top.Count != nil {
		s.Count = top.Count
	}
	if top.Display != nil {
		s.Display = top.Display
	}
	return s
}

// Compile checks a spec and turns it into a Rule.
func (s RuleSpec) Compile() (Rule, error) {
	var r Rule
	if s.Operator != nil {
		op, err := ParseOp(*s.Operator)
		if err != nil {
			return r, err
		}
		r.Op = op
	}
	if s.Warning != nil {
		r.Warning, r.HasWarning = *s.Warning, true
	}
	if s.Critical != nil {
		r.Critical, r.HasCritical = *s.Critical, true
	}
	if r.Op != OpNagios && !r.HasWarning && !r.HasCritical {
		return r, fmt.Errorf("the rule has neither warning nor critical (set at least one, or operator: nagios)")
	}
	if s.Hysteresis != nil {
		h := *s.Hysteresis
		if h < 0 || h >= 1 {
			return r, fmt.Errorf("hysteresis %v is out of range (accepted: a fraction from 0 up to but not including 1, e.g. 0.1 for 10%%)", h)
		}
		r.Hysteresis = h
	}
	if s.Count != nil {
		if *s.Count < 0 {
			return r, fmt.Errorf("count %d is negative (accepted: 0 or more consecutive breaches)", *s.Count)
		}
		r.Count = *s.Count
	}
	if s.Display != nil {
		r.Display = *s.Display
	}
	return r, nil
}

// Spec is the thresholds block of a config: plugin name, then field path
// (nested keys joined with ".", e.g. "partitions./.percent"), then the rule.
type Spec map[string]map[string]RuleSpec

// Set is a compiled, immutable set of rules. The zero Set has no rules.
type Set struct {
	rules map[string]map[string]*Rule
}

// Compile merges layers left to right (each later layer overrides the keys
// it sets in a rule of an earlier one) and compiles the result. The usual
// call is Compile(global, profile1, profile2...).
func Compile(layers ...Spec) (*Set, error) {
	merged := map[string]map[string]RuleSpec{}
	for _, l := range layers {
		for plugin, fields := range l {
			m := merged[plugin]
			if m == nil {
				m = map[string]RuleSpec{}
				merged[plugin] = m
			}
			for field, rs := range fields {
				m[field] = m[field].over(rs)
			}
		}
	}
	set := &Set{rules: make(map[string]map[string]*Rule, len(merged))}
	for _, plugin := range sortedKeys(merged) {
		fields := merged[plugin]
		out := make(map[string]*Rule, len(fields))
		for _, field := range sortedKeys(fields) {
			r, err := fields[field].Compile()
			if err != nil {
				return nil, fmt.Errorf("thresholds.%s.%s: %w", plugin, field, err)
			}
			out[field] = &r
		}
		set.rules[plugin] = out
	}
	return set, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Match is the result of a lookup.
type Match struct {
	// Rule is the matching rule.
	Rule *Rule
	// Key is the rule's field path (after generic matching).
	Key string
	// CheckName is the leading part generic matching stripped from the
	// field name, without its separator ("" for an exact match).
	CheckName string
}

// Lookup finds the rule for a plugin's field. Without an exact entry it
// strips leading segments of the field name (segments end at "_" or ".")
// until an entry matches: nagios_runner's check_disk_root_status_code
// matches a rule for status_code, with CheckName "check_disk_root".
// It does not allocate.
func (s *Set) Lookup(plugin, field string) (Match, bool) {
	if s == nil || plugin == RTTPlugin {
		return Match{}, false
	}
	fields := s.rules[plugin]
	if fields == nil {
		return Match{}, false
	}
	if r := fields[field]; r != nil {
		return Match{Rule: r, Key: field}, true
	}
	for i := 0; i < len(field); i++ {
		if c := field[i]; c != '_' && c != '.' {
			continue
		}
		rest := field[i+1:]
		if rest == "" {
			break
		}
		if r := fields[rest]; r != nil {
			return Match{Rule: r, Key: rest, CheckName: field[:i]}, true
		}
	}
	return Match{}, false
}

// RTT returns the round-trip-time rule (milliseconds) for host: its own
// entry under thresholds.rtt, else the "*" entry.
func (s *Set) RTT(host string) (*Rule, bool) {
	if s == nil {
		return nil, false
	}
	fields := s.rules[RTTPlugin]
	if r := fields[host]; r != nil {
		return r, true
	}
	if r := fields["*"]; r != nil {
		return r, true
	}
	return nil, false
}

// Plugins lists the plugins with rules, sorted.
func (s *Set) Plugins() []string {
	if s == nil {
		return nil
	}
	return sortedKeys(s.rules)
}

// Rules returns the rules of a plugin keyed by field path (a copy).
func (s *Set) Rules(plugin string) map[string]Rule {
	if s == nil {
		return nil
	}
	out := make(map[string]Rule, len(s.rules[plugin]))
	for k, r := range s.rules[plugin] {
		out[k] = *r
	}
	return out
}

// JoinPath joins field path segments with ".", the separator of nested
// fields ("partitions", "/", "percent" -> "partitions./.percent").
func JoinPath(segs ...string) string { return strings.Join(segs, ".") }

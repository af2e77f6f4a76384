package alert

import (
	"errors"
	"fmt"
	"time"
)

// Silence is a maintenance window: while it is in force, alerts it matches
// change state as usual but send no notifications; what is still due when
// it ends goes out then.
type Silence struct {
	// ID names the silence (for deleting it).
	ID string
	// Host, Plugin and Field are patterns; "" and "*" match anything, "*"
	// inside a pattern matches any run of characters and "?" any one.
	Host, Plugin, Field string
	// Start and End bound the window: in force from Start up to, not
	// including, End.
	Start, End time.Time
	// By is who made it and Comment why; Created is when.
	By, Comment string
	Created     time.Time
}

// Validate checks a silence before it is added.
func (s *Silence) Validate() error {
	if s.ID == "" {
		return errors.New("silence: missing id")
	}
	if s.End.IsZero() {
		return errors.New("silence: missing end (give a duration such as --for 2h, or an end time)")
	}
	if !s.End.After(s.Start) {
		return fmt.Errorf("silence: end %s is not after start %s", s.End.Format(time.RFC3339), s.Start.Format(time.RFC3339))
	}
	if s.Host == "" && s.Plugin == "" && s.Field == "" {
		return errors.New("silence: it would match every alert; name a host, plugin or field pattern (use host \"*\" to silence everything on purpose)")
	}
	return nil
}

// Active reports whether the silence is in force at now.
func (s *Silence) Active(now time.Time) bool {
	return !now.Before(s.Start) && now.Before(s.End)
}

// Matches reports whether the silence covers the alert k at now.
func (s *Silence) Matches(k Key, now time.Time) bool {
	return s.Active(now) && Glob(s.Host, k.Host) && Glob(s.Plugin, k.Plugin) && Glob(s.Field, k.Field)
}

// Silenced reports whether any of the silences covers k at now.
func Silenced(silences []Silence, k Key, now time.Time) bool {
	for i := range silences {
		if silences[i].Matches(k, now) {
			return true
		}
	}
	return false
}

// Glob matches name against a pattern where "*" is any run of characters
// (slashes and dots included) and "?" is one character; the empty pattern
// matches anything.
func Glob(pattern, name string) bool {
	if pattern == "" || pattern == "*" {
		return true
	}
	// Iterative matcher with one backtrack point for the last star.
	p, n := 0, 0
	star, mark := -1, 0
	for n < len(name) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == name[n]):
			p++
			n++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, n
			p++
		case star >= 0:
			p = star + 1
			mark++
			n = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

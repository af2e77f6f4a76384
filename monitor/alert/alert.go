// Package alert is the monitor's alert state machine: one State per host,
// plugin and field, and pure transition functions that say when a
// notification is due. It implements hbd's rules (notify on OK->WARNING,
// WARNING->CRITICAL, OK->CRITICAL and any->OK, never on CRITICAL->WARNING,
// re-notify an ongoing alert every renotify interval until acknowledged)
// and the monitor's additions: acknowledgements with an expiry, silences,
// topology holds and flap damping.
//
// Nothing here stores or sends anything; the engine keeps the states and
// acts on the Decisions.
package alert

import (
	"errors"
	"time"

	"github.com/mbvm/mb/monitor/threshold"
)

// Level is an alert level (OK, WARNING, CRITICAL, UNKNOWN).
type Level = threshold.Level

// The levels, re-exported for readers of this package.
const (
	OK       = threshold.OK
	Warning  = threshold.Warning
	Critical = threshold.Critical
	Unknown  = threshold.Unknown
)

// DefaultRenotify is hbd's default threshold_renotify_interval.
const DefaultRenotify = 3600 * time.Second

// ReachabilityPlugin is the plugin name of a host's reachability alert
// (field ""): overdue is WARNING, down is CRITICAL, back up is OK.
const ReachabilityPlugin = "reachability"

// Key names an alert.
type Key struct {
	Host, Plugin, Field string
}

// String renders the key as host/plugin.field (host/plugin without a field).
func (k Key) String() string {
	if k.Field == "" {
		return k.Host + "/" + k.Plugin
	}
	return k.Host + "/" + k.Plugin + "." + k.Field
}

// Ack is an acknowledgement: it stops re-notifications of an ongoing alert.
// It ends when the alert recovers, when it escalates, or at Until.
type Ack struct {
	// By is who acknowledged; Comment says why.
	By, Comment string
	// At is when; Until is when it expires (zero: at recovery only).
	At, Until time.Time
}

// Active reports whether the acknowledgement is in force at now.
func (a *Ack) Active(now time.Time) bool {
	return a != nil && (a.Until.IsZero() || now.Before(a.Until))
}

// State is the state of one alert.
type State struct {
	// Key names the alert.
	Key Key
	// Level is the confirmed level; Streak counts consecutive breaches of a
	// higher level not yet confirmed (a rule's count).
	Level  Level
	Streak int
	// Since is when Level was entered; Updated is the newest sample's time.
	Since, Updated time.Time
	// Value and Text are the newest value and its rendered text.
	Value float64
	Text  string
	// Notified is the level people were last told about (OK: none, or
	// recovered) and NotifiedAt when any notification went out.
	Notified   Level
	NotifiedAt time.Time
	// AlertedAt is when the last alert (not recovery) went out, and Peak
	// the highest level alerted since then within one renotify window.
	AlertedAt time.Time
	Peak      Level
	// Flapping is set when an alert repeats within one renotify window;
	// while set, at most one notification goes out per window.
	Flapping bool
	// Ack is the acknowledgement in force, if any.
	Ack *Ack
	// Stale marks a value that predates the host becoming unreachable
	// (held by topology; the engine sets and clears it).
	Stale bool
}

// Active reports whether the alert is not OK.
func (s *State) Active() bool { return s.Level != OK }

// Env is what a transition needs besides the state.
type Env struct {
	// Now is the time of the transition.
	Now time.Time
	// Renotify is the re-notification interval (0: DefaultRenotify).
	Renotify time.Duration
	// Silenced: a silence matches the alert now. Held: its host is down or
	// overdue (topology). Muted: the host has watch: false. Any of them
	// keeps notifications back; they go out once it no longer applies.
	Silenced, Held, Muted bool
	// Calm is how long an alert must have been OK for a new alert to be
	// news rather than the same alert flapping (0, or more than Renotify:
	// the renotify window). The engine shortens it for reachability, so a
	// second real outage after the host was up a while is told at once,
	// while a host going down and up every few seconds is damped.
	Calm time.Duration
}

func (e Env) every() time.Duration {
	if e.Renotify <= 0 {
		return DefaultRenotify
	}
	return e.Renotify
}

// Kind is what a Decision asks for.
type Kind uint8

// The kinds of decision.
const (
	None     Kind = iota // nothing to send
	Alert                // a new or escalated alert
	Renotify             // an ongoing, unacknowledged alert, again
	Recovery             // back to OK
)

// String names the kind.
func (k Kind) String() string {
	switch k {
	case Alert:
		return "alert"
	case Renotify:
		return "renotify"
	case Recovery:
		return "recovery"
	}
	return "none"
}

// Decision is the outcome of a transition: whether to notify, and about
// which level change.
type Decision struct {
	Kind            Kind
	Level, Previous Level
}

// Notify reports whether the decision asks for a notification.
func (d Decision) Notify() bool { return d.Kind != None }

// Observe applies one new sample: raw is the level of the value (from
// threshold.Rule.Level with s.Level as the previous level), count the
// rule's count. The confirmed level follows threshold.Confirm; a change of
// level records Since, recovery and escalation end an acknowledgement, and
// the result is then Reconciled.
func Observe(s State, raw Level, count int, value float64, text string, env Env) (State, Decision) {
	level, streak := threshold.Confirm(raw, s.Level, s.Streak, count)
	if s.Since.IsZero() {
		s.Since = env.Now
	}
	if s.Level == OK && level != OK {
		calm := env.Calm
		if every := env.every(); calm <= 0 || calm > every {
			calm = every
		}
		if env.Now.Sub(s.Since) >= calm {
			// OK long enough: this alert is news, not flapping.
			s.Flapping, s.AlertedAt, s.Peak = false, time.Time{}, OK
		}
	}
	if level != s.Level {
		if level == OK || threshold.Severity(level) > threshold.Severity(s.Level) {
			s.Ack = nil
		}
		s.Level, s.Since = level, env.Now
	}
	s.Streak = streak
	s.Value, s.Text, s.Updated = value, text, env.Now
	s.Stale = false
	return Reconcile(s, env)
}

// escalates reports whether going from what was notified to next is an
// alert hbd notifies (OK->WARNING, WARNING->CRITICAL, OK->CRITICAL, and
// into UNKNOWN from below it); CRITICAL->WARNING is not.
func escalates(notified, next Level) bool {
	return next != OK && threshold.Severity(next) > threshold.Severity(notified)
}

// Reconcile compares the level with what people were last told and decides
// whether a notification is due now. The engine calls it after every sample
// (Observe does) and on every tick, so that notifications held back by a
// silence, a topology hold, watch: false or flap damping go out once that
// ends, and re-notifications go out on time.
func Reconcile(s State, env Env) (State, Decision) {
	now, every := env.Now, env.every()
	if s.Ack != nil && !s.Ack.Active(now) {
		s.Ack = nil
	}
	if env.Silenced || env.Held || env.Muted {
		return s, Decision{}
	}
	windowDone := now.Sub(s.NotifiedAt) >= every
	if s.Level == s.Notified {
		if s.Level == OK {
			if s.Flapping && now.Sub(s.Since) >= every {
				// A whole window of calm ends the flapping.
				s.Flapping = false
			}
			return s, Decision{}
		}
		if s.Ack != nil || !windowDone {
			return s, Decision{}
		}
		s.NotifiedAt, s.AlertedAt, s.Peak = now, now, s.Level
		return s, Decision{Kind: Renotify, Level: s.Level, Previous: s.Level}
	}
	var kind Kind
	switch {
	case s.Level == OK:
		kind = Recovery
	case escalates(s.Notified, s.Level):
		kind = Alert
	default:
		// A quiet de-escalation (CRITICAL->WARNING): remember it, so a
		// later re-escalation is news again.
		s.Notified = s.Level
		return s, Decision{}
	}
	if kind == Alert && s.Ack != nil {
		// Acknowledged before it could be sent (it was silenced or held):
		// whoever acknowledged it knows. Nothing was sent, so its recovery
		// will not be either; if the acknowledgement expires first, the
		// alert goes out then.
		return s, Decision{}
	}
	windowOpen := !s.AlertedAt.IsZero() && now.Sub(s.AlertedAt) < every
	higher := kind == Alert && windowOpen && threshold.Severity(s.Level) > threshold.Severity(s.Peak)
	if s.Flapping && !windowDone && !higher {
		// Damped: at most one notification per window while flapping,
		// but an escalation above anything alerted in it goes out.
		return s, Decision{}
	}
	if kind == Alert && windowOpen && threshold.Severity(s.Level) <= threshold.Severity(s.Peak) {
		// The same alert again within one window: the value is flapping.
		s.Flapping = true
		return s, Decision{}
	}
	d := Decision{Kind: kind, Level: s.Level, Previous: s.Notified}
	s.Notified, s.NotifiedAt = s.Level, now
	if kind == Alert {
		if !windowOpen || threshold.Severity(s.Level) > threshold.Severity(s.Peak) {
			s.Peak = s.Level
		}
		s.AlertedAt = now
	}
	return s, d
}

// ErrNotActive is returned when acknowledging an alert that is OK.
var ErrNotActive = errors.New("the alert is OK: there is nothing to acknowledge")

// Acknowledge records an acknowledgement of an active alert; it stops
// re-notifications until the alert recovers, escalates, or a.Until passes.
func Acknowledge(s State, a Ack) (State, error) {
	if s.Level == OK {
		return s, ErrNotActive
	}
	if !a.Until.IsZero() && !a.Until.After(a.At) {
		return s, errors.New("the acknowledgement's expiry is not after its time (give a positive duration)")
	}
	s.Ack = &a
	return s, nil
}

// Unacknowledge removes an acknowledgement.
func Unacknowledge(s State) State {
	s.Ack = nil
	return s
}

// Package notify delivers the monitor's notifications. It follows
// Alertmanager's shape: every channel type is a small package under
// monitor/notify that only formats and sends one message, and the common
// work is done once here: parsing monitor.yaml's notification_channels,
// routing a message to its recipients' channels (min_level, recovery only
// to the channels that got the alert), the durable outbox interface, and
// the dispatcher that retries with backoff until a message is sent or
// dropped as failed.
package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Level is an alert state, as hbd names them.
type Level string

// The four alert states.
const (
	OK       Level = "OK"
	Warning  Level = "WARNING"
	Critical Level = "CRITICAL"
	Unknown  Level = "UNKNOWN"
)

// rank orders levels for min_level filtering. UNKNOWN ranks with WARNING:
// a channel that asks for WARNING and above hears about it, a CRITICAL-only
// channel does not.
func (l Level) rank() int {
	switch l {
	case Warning, Unknown:
		return 1
	case Critical:
		return 2
	}
	return 0
}

// AtLeast reports whether l is as severe as min.
func (l Level) AtLeast(min Level) bool { return l.rank() >= min.rank() }

// Message is one notification: an alert, a re-notification, a recovery or
// a test.
type Message struct {
	ID                  string // unique, and the same across retries
	Time                time.Time
	Host, Plugin, Field string
	Level, Previous     Level
	Value               string // the formatted current value
	Text                string // the rendered display line
	Recovery            bool
	Test                bool     // sent by `mb monitor notify test`
	Recipients          []string // user names; empty means every channel
}

// IsRecovery reports whether m ends an alert: marked so, or back at OK.
func (m Message) IsRecovery() bool { return m.Recovery || (m.Level == OK && !m.Test) }

// Subject is a one-line summary for channels that have a title or subject.
func (m Message) Subject() string {
	what := m.Field
	if m.Plugin != "" && m.Field != "" {
		what = m.Plugin + "." + m.Field
	} else if m.Plugin != "" {
		what = m.Plugin
	}
	switch {
	case m.Test:
		return "[mb] test notification"
	case m.IsRecovery():
		return fmt.Sprintf("[mb] RECOVERED %s %s", m.Host, what)
	}
	return fmt.Sprintf("[mb] %s %s %s", m.Level, m.Host, what)
}

// Body is the message text for channels that send plain text: the display
// line, or a summary built from the fields when there is none.
func (m Message) Body() string {
	if m.Text != "" {
		return m.Text
	}
	if m.Test {
		return "mb test notification: this channel works"
	}
	s := m.Subject()[len("[mb] "):]
	if m.Value != "" {
		s += " = " + m.Value
	}
	return s
}

// Plain is the subject and the body on two lines, for chat channels.
func (m Message) Plain() string { return m.Subject() + "\n" + m.Body() }

// Channel is one configured notification channel. Send formats m for the
// service and delivers it once; it does not retry. When retrying cannot
// help (the service refused the request, credentials are wrong) it returns
// an error wrapped with Permanent.
type Channel interface {
	Name() string
	Type() string
	Send(ctx context.Context, m Message) error
}

// Redactor is implemented by channels that can show their configuration
// with every secret replaced, for logs and `mb monitor` output.
type Redactor interface {
	Redacted() map[string]any
}

type permanentError struct{ err error }

// Error is the wrapped error's text.
func (e permanentError) Error() string { return e.err.Error() }

// Unwrap returns the wrapped error.
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that retrying cannot fix: the dispatcher marks
// the notification failed at once instead of retrying it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with
// Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// NewID returns a random message ID (32 hex digits).
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

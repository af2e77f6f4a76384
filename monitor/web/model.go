package web

import (
	"html/template"
	"time"
)

// KV is one labelled value.
type KV struct{ K, V string }

// LiveHost is one row of /live.
type LiveHost struct {
	Name, Source, Address string
	// Reach is up, overdue, down, stopped or unknown.
	Reach, ReachReason string
	LastSeen           time.Time
	RTT                time.Duration
	// Worst is the most severe alert level (OK, WARNING, CRITICAL,
	// UNKNOWN); Alerts counts the active ones.
	Worst  string
	Alerts int
}

// Message is one entry of the message stream.
type Message struct {
	Time             time.Time
	Host, Kind, Text string
}

// LiveBody is /live's data.
type LiveBody struct {
	Hosts    []LiveHost
	Messages []Message
}

// AckView is an alert's acknowledgement.
type AckView struct {
	By, Comment string
	At, Until   time.Time
}

// AlertRow is one alert.
type AlertRow struct {
	Host, Plugin, Field, Name, Level, Text, Value string
	Since                                         time.Time
	Ack                                           *AckView
	Silenced, Held, Flapping                      bool
	// CanAct: the user may acknowledge and silence it.
	CanAct bool
}

// SilenceRow is one silence.
type SilenceRow struct {
	ID, Target, By, Comment string
	Start, End              time.Time
	Active                  bool
}

// AlertsBody is /alerts' data.
type AlertsBody struct {
	Level    string
	Text     string
	Levels   []string
	Alerts   []AlertRow
	Silences []SilenceRow
	History  []Message
}

// HostBody is /hosts/{host}'s data.
type HostBody struct {
	Name, Reach, Worst string
	Info               []KV
	Plugins            []PluginView
	Range              string
	Ranges             []string
	Charts             []template.HTML
	Alerts             []AlertRow
	// IsVM: the host is a VM of this daemon; VM holds its details.
	IsVM, Running bool
	VM            []KV
	// CanAct: the user may start and stop it.
	CanAct bool
}

// PluginView is one plugin's latest data.
type PluginView struct {
	Name   string
	Time   time.Time
	Fields []KV
}

// UserRow is one configured user.
type UserRow struct {
	Name, FullName string
	Admin          bool
	Channels       string
}

// AuditRow is one audit log entry.
type AuditRow struct {
	Time                       time.Time
	User, Action, Target, Info string
}

// SettingsBody is /settings' data.
type SettingsBody struct {
	Config     string
	Users      []UserRow
	Channels   []KV
	Thresholds string
	Audit      []AuditRow
	Results    []KV
}

// LoginBody is /login's data.
type LoginBody struct {
	Next, Username, Error string
}

// ErrorBody is an error page's data.
type ErrorBody struct {
	Status  int
	Message string
}

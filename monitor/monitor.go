// Package monitor is mb's monitoring engine: it keeps a model of every host
// that reports in (VMs mb runs, and fleet hosts), checks their metrics
// against thresholds with hbd's semantics, runs the alert state machine and
// hands out notifications.
//
// The engine has no network, VM or file code: sources push Observations in
// (Observe, MarkStopped, MarkDown), the host process calls Tick on a timer,
// readers ask questions (Hosts, Host, Alerts, History), and the engine talks
// out through the small interfaces it is given: a Notifier for outgoing
// notifications, and optionally a Store for durable state, a SampleSink for
// rollups and a Journal. Time comes from an injected clock.
package monitor

import (
	"context"
	"time"

	"github.com/mbvm/mb/monitor/alert"
	"github.com/mbvm/mb/monitor/threshold"
)

// Reachability is whether a host is reporting in.
type Reachability string

// The reachability states.
const (
	// Up: reported within interval + grace.
	Up Reachability = "up"
	// Overdue: missed interval + grace.
	Overdue Reachability = "overdue"
	// Down: overdue for DownAfter intervals, or reported down by its source
	// (a crashed VM, an unresponsive agent).
	Down Reachability = "down"
	// Stopped: expected absence (the user stopped it, it shut down
	// cleanly, or its restart policy is restarting it). Not an outage.
	Stopped Reachability = "stopped"
	// Unknown: known from the config or the store but not heard from yet.
	Unknown Reachability = "unknown"
)

// Observation is one report from a source about a host: a heartbeat
// (Plugin empty) or a plugin's data.
type Observation struct {
	// Host is the host's name (a VM's name for VMs).
	Host string
	// Source names the source ("vm", "hbc", "tracker", "socktop", ...).
	Source string
	// Time is when it was observed; zero means the engine's clock.
	Time time.Time
	// Plugin names the plugin whose data Fields is (hbd's names:
	// cpu_monitor, memory_monitor, disk_monitor, network_monitor, ...);
	// empty for a bare heartbeat.
	Plugin string
	// Fields is the plugin's data; nested maps become dotted field paths
	// (partitions -> / -> percent is "partitions./.percent").
	Fields map[string]any
	// RTT is the measured round-trip time; 0 when not measured.
	RTT time.Duration
	// Address is the address the report came from ("ip" or "ip:port");
	// empty when there is none (a local VM).
	Address string
	// Interval is the reporting interval the source announces; 0 keeps the
	// configured one.
	Interval time.Duration
	// Owner is an ownership claim made by the host (hbc's owner key); the
	// config's owner wins over it.
	Owner string
	// Shutdown: the host announced a clean shutdown; it becomes Stopped
	// after this observation is recorded.
	Shutdown bool
}

// Notification is one message to people about an alert. Routing it to
// users' channels is the notifier's job.
type Notification struct {
	// ID is unique per notification.
	ID string
	// Time is when the engine decided to send it.
	Time time.Time
	// Host, Plugin and Field name the alert (Plugin "reachability" with an
	// empty Field is the host's reachability; Plugin "rtt" its RTT).
	Host, Plugin, Field string
	// Level is the new level and Previous the level last notified
	// ("OK", "WARNING", "CRITICAL", "UNKNOWN"); equal for a re-notification.
	Level, Previous string
	// Value is the value, formatted.
	Value string
	// Text is the human-readable message.
	Text string
	// Recovery marks a return to OK.
	Recovery bool
	// Recipients are the user names to tell: the host's owner (or the
	// default owner), managers and monitors.
	Recipients []string
}

// Notifier receives outgoing notifications. Notify is called in the order
// the engine decides them, outside the engine's lock; it should hand the
// notification to durable storage and return quickly, and must not call the
// engine's mutating methods (readers are fine). It is called before the
// Store saves the alert state that records the notification, so that a
// crash in between repeats the notification rather than losing it.
type Notifier interface {
	Notify(ctx context.Context, n Notification)
}

// NotifierFunc adapts a function to Notifier.
type NotifierFunc func(ctx context.Context, n Notification)

// Notify calls f.
func (f NotifierFunc) Notify(ctx context.Context, n Notification) { f(ctx, n) }

// AddressChange is one entry of a host's address history.
type AddressChange struct {
	// Address is the host's address (without a port) from Since on.
	Address string
	Since   time.Time
}

// HostRecord is the durable part of a host.
type HostRecord struct {
	// Name is the host's name.
	Name string
	// Source is the source that reported last; Sources every source that
	// ever reported it, in order of appearance.
	Source  string
	Sources []string
	// Addresses is the address history, oldest first (the last is the
	// current one; at most 16 are kept).
	Addresses []AddressChange
	// FirstSeen and LastSeen are the first and newest reports.
	FirstSeen, LastSeen time.Time
	// Reach is the reachability since ReachSince, with the source's reason
	// for a stop or a reported outage.
	Reach       Reachability
	ReachSince  time.Time
	ReachReason string
}

// Snapshot is the durable state a Store gives back on start.
type Snapshot struct {
	// Hosts, Alerts (with their acknowledgements) and Silences, each in
	// any order.
	Hosts    []HostRecord
	Alerts   []alert.State
	Silences []alert.Silence
}

// Store keeps the engine's durable state. Saves are made in order, outside
// the engine's lock; an acknowledgement or silence is reported done only
// once its save returned.
type Store interface {
	SaveHost(ctx context.Context, h HostRecord) error
	SaveAlert(ctx context.Context, s alert.State) error
	DeleteAlert(ctx context.Context, k alert.Key) error
	SaveSilence(ctx context.Context, s alert.Silence) error
	DeleteSilence(ctx context.Context, id string) error
	Load(ctx context.Context) (Snapshot, error)
}

// SampleSink receives every numeric sample, for rollups. AddSample is
// called under the engine's lock and must be quick and never call back.
type SampleSink interface {
	AddSample(host, field string, t time.Time, v float64)
}

// ReportSink is an optional SampleSink capability: every numeric field of
// one report in one call. names is the same slice (not to be changed) for
// every report of the same field list, so a sink may cache what it derives
// from it by its address; values[i] is the value of names[i], NaN when the
// report lacked it. values is only valid during the call. It is called
// under the engine's lock and must be quick and never call back.
type ReportSink interface {
	SampleSink
	AddReport(host string, t time.Time, names []string, values []float32)
}

// Journal records observations and alert transitions (hbd's message
// journal). source is the report's address, "" for none.
type Journal interface {
	Record(t time.Time, source string, message any) error
}

// HostSettings are the per-host keys of the config.
type HostSettings struct {
	// Owner, Managers and Monitors are user names.
	Owner              string
	Managers, Monitors []string
	// Watch false mutes every notification about the host.
	Watch bool
	// ThresholdConfig names threshold profiles applied left to right over
	// the global thresholds.
	ThresholdConfig []string
	// Interval and Grace override the global ones when not zero.
	Interval, Grace time.Duration
}

// Settings is the engine's configuration (the monitor.yaml keys it uses).
type Settings struct {
	// Interval is the expected reporting interval (0: DefaultInterval) and
	// Grace the slack before a host is overdue (0: none; hbd's default is
	// DefaultGrace, which monitor/config fills in).
	Interval, Grace time.Duration
	// DownAfter is how many intervals (beyond grace) a host may miss before
	// overdue becomes down (default 3).
	DownAfter int
	// Renotify is threshold_renotify_interval (default 3600 s).
	Renotify time.Duration
	// Thresholds are the global rules; Profiles the threshold_configs.
	Thresholds threshold.Spec
	Profiles   map[string]threshold.Spec
	// Hosts holds the per-host settings; DefaultOwner owns hosts without
	// an owner.
	Hosts        map[string]HostSettings
	DefaultOwner string
	// MaxHosts bounds the hosts the engine tracks (0: no limit).
	MaxHosts int
	// SamplesPerField is the length of each field's in-memory sample ring
	// (default 32).
	SamplesPerField int
}

// Defaults used for zero Settings fields.
const (
	DefaultInterval        = 20 * time.Second
	DefaultGrace           = 2 * time.Second
	DefaultDownAfter       = 3
	DefaultSamplesPerField = 32
)

// Sample is one value of a field at a time.
type Sample struct {
	// Time is to the second; Value was kept as a float32.
	Time  time.Time
	Value float64
}

// HostInfo is a snapshot of a host, safe to keep.
type HostInfo struct {
	HostRecord
	// Interval and Grace are the expected reporting interval and slack.
	Interval, Grace time.Duration
	// RTT is the last round-trip time, RTTSmoothed its moving average
	// (zero when never measured).
	RTT, RTTSmoothed time.Duration
	// Plugins holds the latest data of every plugin, and PluginTimes when
	// it arrived.
	Plugins     map[string]map[string]any
	PluginTimes map[string]time.Time
	// Alerts are the host's alert states, sorted by plugin and field.
	Alerts []AlertInfo
	// Owner (the default owner when none is set), Managers and Monitors.
	Owner              string
	Managers, Monitors []string
	// Watch false: notifications about the host are muted.
	Watch bool
	// ThresholdConfig lists the host's threshold profiles.
	ThresholdConfig []string
}

// AlertInfo is a snapshot of one alert.
type AlertInfo struct {
	alert.State
	// Silenced: a silence covers it now. Held: its host is not up, so it
	// is held back (topology).
	Silenced, Held bool
}

// AlertFilter selects alerts. The zero filter selects every active alert.
type AlertFilter struct {
	// Host, when set, selects one host.
	Host string
	// All includes alerts that are OK.
	All bool
	// MinLevel drops alerts less severe (threshold.Severity) than it.
	MinLevel threshold.Level
}

package monitor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mbvm/mb/monitor/alert"
	"github.com/mbvm/mb/monitor/threshold"
)

// Options configure an Engine. Only Settings is needed; every interface
// may be nil.
type Options struct {
	// Settings is the initial configuration (see Reload).
	Settings Settings
	// Clock returns the current time (default time.Now).
	Clock func() time.Time
	// Notifier receives notifications (nil: they are only journaled).
	Notifier Notifier
	// Store keeps durable state (nil: nothing survives a restart).
	Store Store
	// Samples receives every numeric sample, for rollups.
	Samples SampleSink
	// Journal records observations and transitions.
	Journal Journal
	// Logger receives the engine's own problems (default slog.Default()).
	Logger *slog.Logger
	// NewID makes notification and silence IDs (default: 16 random hex
	// digits).
	NewID func() string
}

// Errors the engine returns.
var (
	ErrTooManyHosts = errors.New("too many hosts: max_hosts reached (raise max_hosts in monitor.yaml)")
	ErrNoHost       = errors.New("no such host")
	ErrNoAlert      = errors.New("no such alert")
	ErrNoSilence    = errors.New("no such silence")
)

// Engine is the monitor. Its methods are safe for concurrent use.
type Engine struct {
	clock   func() time.Time
	notify  Notifier
	store   Store
	samples SampleSink
	journal Journal
	log     *slog.Logger
	newID   func() string
	started time.Time
	stats   counters

	// wmu orders side effects (store saves, notifications, journal) in
	// the order the state changes were made: it is taken before mu is
	// released.
	wmu sync.Mutex

	mu       sync.Mutex
	set      Settings
	sets     map[string]*threshold.Set // compiled per profile list
	hosts    map[string]*host
	list     []*host // the same hosts, for Tick
	gen      uint64  // counts Reloads (host.gen)
	silences []alert.Silence
	// schemas interns the field lists of plugin reports; leaves is
	// Observe's scratch space.
	schemas map[string]*schema
	leaves  []leaf
}

// New makes an engine. Call Load to restore durable state from the Store.
func New(opts Options) (*Engine, error) {
	e := &Engine{
		clock:   opts.Clock,
		notify:  opts.Notifier,
		store:   opts.Store,
		samples: opts.Samples,
		journal: opts.Journal,
		log:     opts.Logger,
		newID:   opts.NewID,
		hosts:   map[string]*host{},
		schemas: map[string]*schema{},
	}
	if e.clock == nil {
		e.clock = time.Now
	}
	if e.log == nil {
		e.log = slog.Default()
	}
	if e.newID == nil {
		e.newID = randomID
	}
	e.started = e.clock()
	if err := e.Reload(opts.Settings); err != nil {
		return nil, err
	}
	return e, nil
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Reload replaces the settings. Rules and profiles are compiled first; a
// bad one is refused and the old settings stay in force.
func (e *Engine) Reload(s Settings) error {
	if s.Interval <= 0 {
		s.Interval = DefaultInterval
	}
	if s.Grace < 0 {
		s.Grace = 0
	}
	if s.DownAfter <= 0 {
		s.DownAfter = DefaultDownAfter
	}
	if s.Renotify <= 0 {
		s.Renotify = alert.DefaultRenotify
	}
	if s.SamplesPerField <= 0 {
		s.SamplesPerField = DefaultSamplesPerField
	}
	sets := map[string]*threshold.Set{}
	global, err := threshold.Compile(s.Thresholds)
	if err != nil {
		return err
	}
	sets[""] = global
	for name, hs := range s.Hosts {
		if _, err := compileFor(sets, s, hs.ThresholdConfig); err != nil {
			return fmt.Errorf("hosts.%s.threshold_config: %w", name, err)
		}
	}
	e.mu.Lock()
	e.set, e.sets = s, sets
	e.gen++
	for name := range s.Hosts {
		if e.hosts[name] == nil {
			// Known from the config, not heard from yet: unknown.
			e.addHost(newHost(name))
		}
	}
	e.mu.Unlock()
	return nil
}

// compileFor returns the rule set for a profile list, compiling and caching it.
func compileFor(sets map[string]*threshold.Set, s Settings, profiles []string) (*threshold.Set, error) {
	key := strings.Join(profiles, "\x00")
	if set := sets[key]; set != nil {
		return set, nil
	}
	layers := []threshold.Spec{s.Thresholds}
	for _, p := range profiles {
		spec, ok := s.Profiles[p]
		if !ok {
			return nil, fmt.Errorf("unknown threshold profile %q (defined in threshold_configs: %s)", p, strings.Join(sortedNames(s.Profiles), ", "))
		}
		layers = append(layers, spec)
	}
	set, err := threshold.Compile(layers...)
	if err != nil {
		return nil, fmt.Errorf("profiles %s: %w", strings.Join(profiles, ", "), err)
	}
	sets[key] = set
	return set, nil
}

// rules returns the host's rule set (e.mu held).
func (e *Engine) rules(h *host) *threshold.Set {
	hs := e.set.Hosts[h.rec.Name]
	set, err := compileFor(e.sets, e.set, hs.ThresholdConfig)
	if err != nil { // checked by Reload; only the global set is left
		return e.sets[""]
	}
	return set
}

// effects are the side effects of a state change, applied in order after
// the engine's lock is released.
type effects struct {
	hosts     []HostRecord
	alerts    []alert.State
	silences  []alert.Silence
	delSil    []string
	delHost   []string
	delAlerts []alert.Key
	notes     []Notification
	journal   []journalEntry
}

type journalEntry struct {
	t      time.Time
	source string
	msg    any
}

// commit releases e.mu (held by the caller) and applies fx in order. It
// returns the first store error.
func (e *Engine) commit(ctx context.Context, fx *effects) error {
	e.wmu.Lock()
	e.mu.Unlock()
	defer e.wmu.Unlock()
	// The change is made in memory already: store it even when the
	// caller's context ends now (a daemon stopping cancels its feeders),
	// or the store would fall behind what the engine has told its readers.
	ctx = context.WithoutCancel(ctx)
	var first error
	keep := func(err error, what string) {
		if err == nil {
			return
		}
		e.log.Error("monitor: store", "what", what, "err", err)
		if first == nil {
			first = err
		}
	}
	// Notifications first: the Notifier writes them to a durable outbox,
	// and the alert states saved below record that they went out. A crash
	// in between then repeats a notification after the restart rather
	// than losing it.
	e.stats.notifications.Add(uint64(len(fx.notes)))
	if e.notify != nil {
		for _, n := range fx.notes {
			e.notify.Notify(ctx, n)
		}
	}
	if e.store != nil {
		if b, ok := e.store.(hostBatcher); ok && len(fx.hosts) > 1 {
			keep(b.SaveHosts(ctx, fx.hosts), fmt.Sprintf("%d hosts", len(fx.hosts)))
		} else {
			for _, h := range fx.hosts {
				keep(e.store.SaveHost(ctx, h), "host "+h.Name)
			}
		}
		for _, s := range fx.silences {
			keep(e.store.SaveSilence(ctx, s), "silence "+s.ID)
		}
		for _, id := range fx.delSil {
			keep(e.store.DeleteSilence(ctx, id), "silence "+id)
		}
		for _, s := range fx.alerts {
			keep(e.store.SaveAlert(ctx, s), "alert "+s.Key.String())
		}
		for _, k := range fx.delAlerts {
			keep(e.store.DeleteAlert(ctx, k), "alert "+k.String())
		}
		if d, ok := e.store.(hostDeleter); ok {
			for _, name := range fx.delHost {
				keep(d.DeleteHost(ctx, name), "host "+name)
			}
		}
	}
	if e.journal != nil {
		for _, j := range fx.journal {
			if err := e.journal.Record(j.t, j.source, j.msg); err != nil {
				e.log.Error("monitor: journal", "err", err)
			}
		}
	}
	if first != nil {
		e.stats.storeErrors.Add(1)
	}
	return first
}

func (e *Engine) now(t time.Time) time.Time {
	if t.IsZero() {
		return e.clock()
	}
	return t
}

// hostFor returns the host, creating it (e.mu held).
func (e *Engine) hostFor(name string) (*host, error) {
	if h := e.hosts[name]; h != nil {
		return h, nil
	}
	if e.set.MaxHosts > 0 && len(e.hosts) >= e.set.MaxHosts {
		return nil, fmt.Errorf("host %q: %w", name, ErrTooManyHosts)
	}
	h := newHost(name)
	e.addHost(h)
	return h, nil
}

// addHost adds a new host (e.mu held).
func (e *Engine) addHost(h *host) {
	e.hosts[h.rec.Name] = h
	h.idx = len(e.list)
	e.list = append(e.list, h)
}

// dropHost forgets a host (e.mu held).
func (e *Engine) dropHost(h *host) {
	delete(e.hosts, h.rec.Name)
	last := e.list[len(e.list)-1]
	e.list[h.idx], last.idx = last, h.idx
	e.list[len(e.list)-1] = nil
	e.list = e.list[:len(e.list)-1]
}

// Observe records one observation: the host is seen (and up, or stopped
// after a shutdown announcement), its RTT and address are updated, and
// the plugin's numeric fields are sampled and checked against the host's
// thresholds. The engine keeps o.Fields: the caller must not change it
// afterwards.
func (e *Engine) Observe(ctx context.Context, o Observation) error {
	if o.Host == "" {
		return errors.New("observation without a host name")
	}
	now := e.now(o.Time)
	fx := &effects{}
	if e.journal != nil {
		// The observation's own entry goes first; it is filled in below.
		fx.journal = make([]journalEntry, 1, 4)
	}
	e.mu.Lock()
	h, err := e.hostFor(o.Host)
	if err != nil {
		e.mu.Unlock()
		e.stats.refused.Add(1)
		return err
	}
	e.stats.observations.Add(1)
	changed := false
	if h.rec.FirstSeen.IsZero() {
		h.rec.FirstSeen, changed = now, true
	}
	if now.After(h.rec.LastSeen) {
		h.rec.LastSeen = now
	}
	changed = h.setSource(o.Source) || changed
	if o.Address != "" {
		changed = h.setAddress(o.Address, now) || changed
	}
	if o.Interval > 0 && o.Interval != h.announced {
		h.announced = o.Interval
		h.gen = 0 // its interval changed
	}
	if o.Owner != "" {
		h.owner = o.Owner
	}
	// A report made before the host was marked stopped or down (a metrics
	// pull racing with a stop) does not bring it back.
	late := (h.rec.Reach == Stopped || h.forcedDown) && !now.After(h.rec.ReachSince)
	if !late {
		h.forcedDown = false
		reach, reason := Up, ""
		if o.Shutdown {
			reach, reason = Stopped, "shut down"
		}
		if e.setReach(h, reach, reason, now, fx) {
			changed = false // setReach saved the record
		}
	}
	if changed {
		fx.hosts = append(fx.hosts, h.rec)
	}
	set := e.rules(h)
	if o.RTT > 0 {
		h.rtt = o.RTT
		if h.srtt == 0 {
			h.srtt = o.RTT
		} else {
			h.srtt += (o.RTT - h.srtt) / 8
		}
		ms := float64(o.RTT) / float64(time.Millisecond)
		e.leaves = append(e.leaves[:0], leaf{v: ms})
		e.record(h, threshold.RTTPlugin, e.leaves, now, nil)
		if r, ok := set.RTT(h.rec.Name); ok {
			e.evaluate(h, threshold.RTTPlugin, "", threshold.Match{Rule: r}, ms, nil, now, fx)
		} else if st := h.findAlert(threshold.RTTPlugin, ""); st != nil {
			e.retire(h, st, now, fx)
		}
	}
	var msg map[string]any
	if e.journal != nil {
		msg = map[string]any{"ID": "HTB", "name": o.Host, "source": o.Source}
		if o.RTT > 0 {
			msg["rtt_ms"] = float64(o.RTT) / float64(time.Millisecond)
		}
		if o.Shutdown {
			msg["shutdown"] = true
		}
	}
	if o.Plugin != "" {
		if e.journal != nil {
			msg = map[string]any{"ID": "PLG", "name": o.Host, "source": o.Source, "plugin": o.Plugin, "data": o.Fields}
		}
		h.pluginTime[o.Plugin] = now
		leaves, compact := collect("", o.Fields, e.leaves[:0])
		e.stats.samples.Add(uint64(len(leaves)))
		e.record(h, o.Plugin, leaves, now, o.Fields)
		if r := h.series[o.Plugin]; compact && r != nil {
			r.keepLast(leaves)
			delete(h.plugins, o.Plugin)
		} else {
			if r != nil {
				r.dropLast()
			}
			h.plugins[o.Plugin] = o.Fields
		}
		for _, lf := range leaves {
			if m, ok := set.Lookup(o.Plugin, lf.path); ok {
				e.evaluate(h, o.Plugin, lf.path, m, lf.v, o.Fields, now, fx)
			} else if st := h.findAlert(o.Plugin, lf.path); st != nil {
				e.retire(h, st, now, fx)
			}
		}
		clear(leaves)
		e.leaves = leaves[:0]
	}
	if e.journal != nil {
		fx.journal[0] = journalEntry{t: now, source: o.Address, msg: msg}
	}
	return e.commit(ctx, fx)
}

// Heartbeat records a bare heartbeat: Observe with no plugin data.
func (e *Engine) Heartbeat(ctx context.Context, host, source, address string, rtt time.Duration) error {
	return e.Observe(ctx, Observation{Host: host, Source: source, Address: address, RTT: rtt})
}

// leaf is one numeric field of a report: its path, value and column.
type leaf struct {
	path string
	v    float64
	col  int
	// kind and bits are the value exactly (kindNone: not a Go number).
	kind uint8
	bits uint64
}

// record adds a report's numeric fields (in path order) to the host's
// sample history of the plugin, and to the sample sink (e.mu held).
func (e *Engine) record(h *host, plugin string, leaves []leaf, now time.Time, data map[string]any) {
	r := h.series[plugin]
	if r == nil {
		r = &series{}
		h.series[plugin] = r
	}
	fits := r.sch != nil && r.size == e.set.SamplesPerField
	if fits {
		cur := 0
		for i := range leaves {
			c := r.sch.col(leaves[i].path, &cur)
			if c < 0 {
				fits = false
				break
			}
			leaves[i].col = c
		}
	}
	if !fits {
		if len(leaves) == 0 && r.sch == nil {
			delete(h.series, plugin)
			return
		}
		r.relayout(e.schemaFor(plugin, r.sch, leaves, data), e.set.SamplesPerField)
		cur := 0
		for i := range leaves {
			leaves[i].col = r.sch.col(leaves[i].path, &cur)
		}
	}
	slot := r.slot(now)
	for _, lf := range leaves {
		r.set(lf.col, slot, lf.v)
	}
	if e.samples == nil {
		return
	}
	if rs, ok := e.samples.(ReportSink); ok {
		rs.AddReport(h.rec.Name, now, r.sch.names, r.row(slot))
		return
	}
	for _, lf := range leaves {
		e.samples.AddSample(h.rec.Name, r.sch.names[lf.col], now, lf.v)
	}
}

// schemaFor returns the interned schema of a plugin with the paths of old
// and of leaves, which come from data (e.mu held).
func (e *Engine) schemaFor(plugin string, old *schema, leaves []leaf, data map[string]any) *schema {
	var paths []string
	if old != nil {
		paths = append(paths, old.paths...)
	}
	for _, lf := range leaves {
		paths = append(paths, lf.path)
	}
	sort.Strings(paths)
	paths = slices.Compact(paths)
	key := plugin + "\x00" + strings.Join(paths, "\x00")
	if sch := e.schemas[key]; sch != nil {
		return sch
	}
	sch := &schema{plugin: plugin, paths: paths, names: make([]string, len(paths)), segs: make([][]string, len(paths))}
	segs := map[string][]string{}
	segments(data, "", nil, segs)
	cur := 0
	for i, p := range paths {
		sch.names[i] = fieldName(plugin, p)
		if s, ok := segs[p]; ok {
			sch.segs[i] = s
		} else if old != nil {
			if c := old.col(p, &cur); c >= 0 {
				sch.segs[i] = old.segs[c]
			}
		}
		if sch.segs[i] == nil {
			sch.segs[i] = []string{p}
		}
	}
	e.schemas[key] = sch
	return sch
}

// env builds the transition environment of an alert (e.mu held). fresh
// says the call carries a new sample of the alert's own value.
func (e *Engine) env(h *host, st *alert.State, now time.Time, fresh bool) alert.Env {
	env := alert.Env{
		Now:      now,
		Renotify: e.set.Renotify,
		Silenced: alert.Silenced(e.silences, st.Key, now),
		Muted:    !e.watched(h),
	}
	if st.Key.Plugin != alert.ReachabilityPlugin {
		env.Held = h.rec.Reach != Up || (!fresh && st.Stale)
	} else {
		env.Calm = e.reachCalm(h)
	}
	return env
}

// Reachability flap damping: a host that was up for reachCalm before it
// went down again has a new outage, told at once; one that goes down
// sooner is flapping and is told at most once per renotify window.
const (
	reachCalmIntervals = 10
	minReachCalm       = 5 * time.Minute
)

// reachCalm is ten expected intervals with their grace, at least
// minReachCalm (e.mu held).
func (e *Engine) reachCalm(h *host) time.Duration {
	return max(reachCalmIntervals*(e.interval(h)+e.grace(h)), minReachCalm)
}

func (e *Engine) watched(h *host) bool {
	hs, ok := e.set.Hosts[h.rec.Name]
	return !ok || hs.Watch
}

// evaluate runs one field value through its rule and the alert machine
// (e.mu held).
func (e *Engine) evaluate(h *host, plugin, field string, m threshold.Match, v float64, data map[string]any, now time.Time, fx *effects) {
	st := h.alert(plugin, field)
	raw := m.Rule.Level(v, st.Level)
	level, _ := threshold.Confirm(raw, st.Level, st.Streak, m.Rule.Count)
	text := ""
	if level != alert.OK || st.Level != alert.OK {
		text = alertText(h.rec.Name, plugin, field, m, level, v, data)
	}
	old := *st
	ns, d := alert.Observe(old, raw, m.Rule.Count, v, text, e.env(h, st, now, true))
	*st = ns
	e.after(h, old, ns, d, now, fx)
}

// retire drops the alert of a field that no longer has a rule (the config
// changed). If people were told it is not OK, they get a recovery saying
// why (e.mu held).
func (e *Engine) retire(h *host, st *alert.State, now time.Time, fx *effects) {
	old := *st
	h.dropAlert(st)
	fx.delAlerts = append(fx.delAlerts, old.Key)
	if old.Notified == alert.OK {
		return
	}
	ended := old
	ended.Level, ended.Value = alert.OK, old.Value
	ended.Text = fmt.Sprintf("%s %s: the alert ended: it has no threshold any more", old.Key.Host, fieldName(old.Key.Plugin, old.Key.Field))
	env := e.env(h, st, now, true)
	if env.Silenced || env.Muted {
		return
	}
	e.note(h, ended, alert.Decision{Kind: alert.Recovery, Level: alert.OK, Previous: old.Notified}, now, fx)
}

// after records the side effects of one alert transition (e.mu held).
// quiet reports whether Tick has nothing to do for an alert: OK, told so,
// not flapping, not acknowledged.
func quiet(st *alert.State) bool {
	return st.Level == alert.OK && st.Notified == alert.OK && !st.Flapping && st.Ack == nil
}

func (e *Engine) after(h *host, old, ns alert.State, d alert.Decision, now time.Time, fx *effects) {
	if !quiet(&ns) {
		h.calm = false
	}
	if durableChange(old, ns) {
		fx.alerts = append(fx.alerts, ns)
	}
	if old.Level != ns.Level {
		e.stats.transitions.Add(1)
		fx.journal = append(fx.journal, journalEntry{t: now, msg: map[string]any{
			"ID": "ALERT", "name": ns.Key.Host, "plugin": ns.Key.Plugin, "field": ns.Key.Field,
			"level": ns.Level.String(), "previous": old.Level.String(),
			"value": threshold.FormatFloat(ns.Value), "text": ns.Text,
		}})
	}
	if d.Notify() {
		e.note(h, ns, d, now, fx)
	}
}

// note records a notification and its journal entry (e.mu held).
func (e *Engine) note(h *host, ns alert.State, d alert.Decision, now time.Time, fx *effects) {
	n := Notification{
		ID: e.newID(), Time: now,
		Host: ns.Key.Host, Plugin: ns.Key.Plugin, Field: ns.Key.Field,
		Level: d.Level.String(), Previous: d.Previous.String(),
		Value: threshold.FormatFloat(ns.Value), Text: ns.Text,
		Recovery:   d.Kind == alert.Recovery,
		Recipients: e.recipients(h),
	}
	if n.Text == "" {
		n.Text = fmt.Sprintf("%s %s is %s", ns.Key.Host, fieldName(ns.Key.Plugin, ns.Key.Field), n.Level)
	}
	fx.notes = append(fx.notes, n)
	fx.journal = append(fx.journal, journalEntry{t: now, msg: map[string]any{
		"ID": "NOTIFY", "kind": d.Kind.String(), "notification": n,
	}})
}

// durableChange reports whether a transition changed what the store keeps.
func durableChange(a, b alert.State) bool {
	return a.Level != b.Level || a.Notified != b.Notified || !a.NotifiedAt.Equal(b.NotifiedAt) ||
		a.Flapping != b.Flapping || a.Ack != b.Ack || a.Stale != b.Stale
}

func fieldName(plugin, field string) string {
	if field == "" {
		return plugin
	}
	return plugin + "." + field
}

// alertText renders the rule's display template, or the default text.
func alertText(hostName, plugin, field string, m threshold.Match, level threshold.Level, v float64, data map[string]any) string {
	tv, has := m.Rule.ThresholdFor(level)
	vars := threshold.Vars{
		Value: v, Threshold: tv, HasThreshold: has, Op: m.Rule.Op,
		CheckName: m.CheckName, MetricName: field, Status: level, Data: data,
	}
	if m.Rule.Op == threshold.OpNagios {
		vars.Status = threshold.NagiosLevel(v)
	}
	if plugin == threshold.RTTPlugin {
		vars.MetricName = "rtt"
	}
	tmpl := m.Rule.Display
	if tmpl == "" {
		switch {
		case m.Rule.Op == threshold.OpNagios:
			tmpl = "{metric_name} {status}: {output}"
		case plugin == threshold.RTTPlugin:
			tmpl = "rtt {value} ms (threshold {op_symbol} {threshold_value} ms)"
		default:
			tmpl = "{metric_name} {value} (threshold {op_symbol} {threshold_value})"
		}
	}
	return fmt.Sprintf("%s %s: %s", hostName, level, threshold.Render(tmpl, &vars))
}

// recipients lists the users to tell about a host (e.mu held).
func (e *Engine) recipients(h *host) []string {
	hs := e.set.Hosts[h.rec.Name]
	owner := e.ownerOf(h)
	var out []string
	seen := map[string]bool{}
	for _, group := range [][]string{{owner}, hs.Managers, hs.Monitors} {
		for _, u := range group {
			if u != "" && !seen[u] {
				seen[u] = true
				out = append(out, u)
			}
		}
	}
	return out
}

// ownerOf is the host's owner: the config's, else the one the host
// claims, else the default owner (e.mu held).
func (e *Engine) ownerOf(h *host) string {
	if o := e.set.Hosts[h.rec.Name].Owner; o != "" {
		return o
	}
	if h.owner != "" {
		return h.owner
	}
	return e.set.DefaultOwner
}

// reachLevel is the reachability alert's level for a state.
func reachLevel(r Reachability) threshold.Level {
	if r == Overdue || r == Down {
		return threshold.Critical
	}
	return threshold.OK
}

// setReach moves a host to a reachability state and runs its
// reachability alert (e.mu held). It reports whether anything changed.
func (e *Engine) setReach(h *host, r Reachability, reason string, now time.Time, fx *effects) bool {
	if h.rec.Reach == r && h.rec.ReachReason == reason {
		return false
	}
	prev := h.rec.Reach
	h.rec.Reach, h.rec.ReachSince, h.rec.ReachReason = r, now, reason
	fx.hosts = append(fx.hosts, h.rec)
	if e.journal != nil {
		fx.journal = append(fx.journal, journalEntry{t: now, msg: map[string]any{
			"ID": "REACH", "name": h.rec.Name, "reach": string(r), "previous": string(prev), "reason": reason,
		}})
	}
	if r != Up && prev == Up {
		// Topology: the host's metric values are stale until it reports again.
		for _, st := range h.alertList {
			if st.Key.Plugin != alert.ReachabilityPlugin && !st.Stale {
				old := *st
				st.Stale = true
				e.after(h, old, *st, alert.Decision{}, now, fx)
			}
		}
	}
	if prev == r {
		return true
	}
	st := h.alert(alert.ReachabilityPlugin, "")
	age := now.Sub(h.rec.LastSeen).Round(time.Second)
	text := fmt.Sprintf("%s is %s", h.rec.Name, r)
	switch {
	case reason != "":
		text += ": " + reason
	case r == Overdue || r == Down:
		text += fmt.Sprintf(": last heard %s ago (expected every %s)", age, e.interval(h))
	}
	old := *st
	ns, d := alert.Observe(old, reachLevel(r), 0, age.Seconds(), text, e.env(h, st, now, true))
	*st = ns
	e.after(h, old, ns, d, now, fx)
	return true
}

// interval is the host's expected interval (e.mu held).
func (e *Engine) interval(h *host) time.Duration {
	e.cache(h)
	return h.iv
}

func (e *Engine) grace(h *host) time.Duration {
	e.cache(h)
	return h.grace
}

// cache computes the host's interval and grace once per settings (e.mu
// held): Tick asks for them every second for every host.
func (e *Engine) cache(h *host) {
	if h.gen == e.gen {
		return
	}
	h.gen = e.gen
	hs := e.set.Hosts[h.rec.Name]
	switch {
	case h.announced > 0:
		h.iv = h.announced
	case hs.Interval > 0:
		h.iv = hs.Interval
	default:
		h.iv = e.set.Interval
	}
	h.grace = e.set.Grace
	if hs.Grace > 0 {
		h.grace = hs.Grace
	}
}

// reachAt computes a host's reachability at now from its last report
// (e.mu held). Stopped and reported-down states stand until a report. A
// host not heard from since this engine started keeps its stored state for
// one interval + grace (no recovery without a report), then counts from
// the start.
func (e *Engine) reachAt(h *host, now time.Time) Reachability {
	switch {
	case h.rec.Reach == Stopped:
		return Stopped
	case h.forcedDown:
		return Down
	case h.rec.LastSeen.IsZero():
		return Unknown
	}
	last := h.rec.LastSeen
	restored := last.Before(e.started)
	if restored {
		last = e.started
	}
	iv, g := e.interval(h), e.grace(h)
	el := now.Sub(last)
	switch {
	case el <= iv+g:
		if restored {
			return h.rec.Reach
		}
		return Up
	case el > time.Duration(e.set.DownAfter)*iv+g || h.rec.Reach == Down:
		return Down
	}
	return Overdue
}

// RemoveHost forgets a host (a deleted VM) and its alerts, without
// notifications. A Store that also has DeleteHost(ctx, name) error forgets
// it too.
func (e *Engine) RemoveHost(ctx context.Context, name string) error {
	e.mu.Lock()
	h := e.hosts[name]
	if h == nil {
		e.mu.Unlock()
		return fmt.Errorf("%q: %w", name, ErrNoHost)
	}
	e.dropHost(h)
	fx := &effects{delHost: []string{name}}
	fx.journal = append(fx.journal, journalEntry{t: e.clock(), msg: map[string]any{"ID": "REMOVE", "name": name}})
	return e.commit(ctx, fx)
}

// hostBatcher is an optional Store capability: saving many host records
// in one transaction (Tick keeps every host's last-seen time current).
type hostBatcher interface {
	SaveHosts(ctx context.Context, hs []HostRecord) error
}

// hostDeleter is the optional Store capability RemoveHost uses.
type hostDeleter interface {
	DeleteHost(ctx context.Context, name string) error
}

// MarkStopped records an expected absence: the user stopped the host, or
// its restart policy is restarting it. It is not an outage: no down alert,
// and its metric alerts are held until it reports again.
func (e *Engine) MarkStopped(ctx context.Context, name, reason string) error {
	return e.mark(ctx, name, Stopped, reason)
}

// MarkDown records that a source knows the host is down now (a crashed
// VM, an agent that stopped answering), without waiting for it to be
// overdue. The next observation brings it back up.
func (e *Engine) MarkDown(ctx context.Context, name, reason string) error {
	return e.mark(ctx, name, Down, reason)
}

func (e *Engine) mark(ctx context.Context, name string, r Reachability, reason string) error {
	fx := &effects{}
	e.mu.Lock()
	h, err := e.hostFor(name)
	if err != nil {
		e.mu.Unlock()
		return err
	}
	h.forcedDown = r == Down
	now := e.clock()
	e.setReach(h, r, reason, now, fx)
	return e.commit(ctx, fx)
}

// Tick evaluates the time-driven parts at now: hosts becoming overdue or
// down, re-notifications, and notifications held back by a silence or a
// hold that has ended. The host process calls it every second or so.
func (e *Engine) Tick(ctx context.Context, now time.Time) error {
	fx := &effects{}
	e.mu.Lock()
	for _, h := range e.list {
		if r := e.reachAt(h, now); r != h.rec.Reach {
			e.setReach(h, r, "", now, fx)
		}
		if h.rec.LastSeen.Sub(h.savedSeen) >= time.Minute {
			// Keep last-seen roughly current in the store.
			h.savedSeen = h.rec.LastSeen
			fx.hosts = append(fx.hosts, h.rec)
		}
		if h.calm {
			continue
		}
		calm := true
		for _, st := range h.alertList {
			if quiet(st) {
				continue
			}
			old := *st
			ns, d := alert.Reconcile(old, e.env(h, st, now, false))
			*st = ns
			e.after(h, old, ns, d, now, fx)
			calm = calm && quiet(st)
		}
		h.calm = calm
	}
	kept := e.silences[:0]
	for _, s := range e.silences {
		if !now.Before(s.End) {
			fx.delSil = append(fx.delSil, s.ID)
			continue
		}
		kept = append(kept, s)
	}
	e.silences = kept
	return e.commit(ctx, fx)
}

// Load restores hosts, alert states and silences from the Store. Hosts
// heard of before this start get one interval to report before they count
// as overdue.
func (e *Engine) Load(ctx context.Context) error {
	if e.store == nil {
		return nil
	}
	snap, err := e.store.Load(ctx)
	if err != nil {
		return fmt.Errorf("monitor: load state: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, rec := range snap.Hosts {
		h := e.hosts[rec.Name]
		if h == nil {
			h = newHost(rec.Name)
			e.addHost(h)
		}
		h.rec = rec
		if h.rec.Reach == Down && h.rec.ReachReason != "" {
			h.forcedDown = true
		}
	}
	for _, st := range snap.Alerts {
		h := e.hosts[st.Key.Host]
		if h == nil {
			h = newHost(st.Key.Host)
			e.addHost(h)
		}
		s := st
		ptr := h.alert(st.Key.Plugin, st.Key.Field)
		*ptr = s
		h.calm = false
	}
	e.silences = append(e.silences[:0], snap.Silences...)
	return nil
}

// Acknowledge acknowledges an active alert: no re-notifications until it
// recovers, escalates, or until passes (zero: no expiry). It returns once
// the acknowledgement is stored.
func (e *Engine) Acknowledge(ctx context.Context, k alert.Key, by, comment string, until time.Time) error {
	fx := &effects{}
	e.mu.Lock()
	st, err := e.lookupAlert(k)
	if err != nil {
		e.mu.Unlock()
		return err
	}
	now := e.clock()
	ns, err := alert.Acknowledge(*st, alert.Ack{By: by, Comment: comment, At: now, Until: until})
	if err != nil {
		e.mu.Unlock()
		return fmt.Errorf("%s: %w", k, err)
	}
	*st = ns
	fx.alerts = append(fx.alerts, ns)
	fx.journal = append(fx.journal, journalEntry{t: now, msg: map[string]any{
		"ID": "ACK", "name": k.Host, "plugin": k.Plugin, "field": k.Field, "by": by, "comment": comment, "until": until,
	}})
	return e.commit(ctx, fx)
}

// Unacknowledge removes an acknowledgement.
func (e *Engine) Unacknowledge(ctx context.Context, k alert.Key, by string) error {
	fx := &effects{}
	e.mu.Lock()
	st, err := e.lookupAlert(k)
	if err != nil {
		e.mu.Unlock()
		return err
	}
	*st = alert.Unacknowledge(*st)
	fx.alerts = append(fx.alerts, *st)
	fx.journal = append(fx.journal, journalEntry{t: e.clock(), msg: map[string]any{
		"ID": "UNACK", "name": k.Host, "plugin": k.Plugin, "field": k.Field, "by": by,
	}})
	return e.commit(ctx, fx)
}

func (e *Engine) lookupAlert(k alert.Key) (*alert.State, error) {
	h := e.hosts[k.Host]
	if h == nil {
		return nil, fmt.Errorf("%q: %w", k.Host, ErrNoHost)
	}
	st := h.findAlert(k.Plugin, k.Field)
	if st == nil {
		return nil, fmt.Errorf("%s: %w", k, ErrNoAlert)
	}
	h.calm = false // the caller changes it
	return st, nil
}

// AddSilence adds (or, with the ID of an existing one, replaces) a
// silence. An empty ID gets a new one and a zero Start or Created the
// clock's time. It returns the silence as stored.
func (e *Engine) AddSilence(ctx context.Context, s alert.Silence) (alert.Silence, error) {
	now := e.clock()
	if s.ID == "" {
		s.ID = e.newID()
	}
	if s.Start.IsZero() {
		s.Start = now
	}
	if s.Created.IsZero() {
		s.Created = now
	}
	if err := s.Validate(); err != nil {
		return s, err
	}
	fx := &effects{silences: []alert.Silence{s}}
	fx.journal = append(fx.journal, journalEntry{t: now, msg: map[string]any{"ID": "SILENCE", "silence": s}})
	e.mu.Lock()
	replaced := false
	for i := range e.silences {
		if e.silences[i].ID == s.ID {
			e.silences[i], replaced = s, true
		}
	}
	if !replaced {
		e.silences = append(e.silences, s)
	}
	return s, e.commit(ctx, fx)
}

// DeleteSilence ends a silence now.
func (e *Engine) DeleteSilence(ctx context.Context, id string) error {
	e.mu.Lock()
	for i := range e.silences {
		if e.silences[i].ID == id {
			e.silences = append(e.silences[:i], e.silences[i+1:]...)
			fx := &effects{delSil: []string{id}}
			fx.journal = append(fx.journal, journalEntry{t: e.clock(), msg: map[string]any{"ID": "UNSILENCE", "id": id}})
			return e.commit(ctx, fx)
		}
	}
	e.mu.Unlock()
	return fmt.Errorf("silence %q: %w", id, ErrNoSilence)
}

package monitor

import (
	"sort"
	"time"

	"github.com/mbvm/mb/monitor/alert"
	"github.com/mbvm/mb/monitor/threshold"
)

// Hosts returns a snapshot of every host, sorted by name.
func (e *Engine) Hosts() []HostInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clock()
	out := make([]HostInfo, 0, len(e.hosts))
	for _, h := range e.hosts {
		out = append(out, e.info(h, now))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Host returns a snapshot of one host.
func (e *Engine) Host(name string) (HostInfo, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	h := e.hosts[name]
	if h == nil {
		return HostInfo{}, false
	}
	return e.info(h, e.clock()), true
}

// info copies a host (e.mu held). Plugin data maps are shared, not copied:
// the engine never changes one after storing it, and readers must not.
func (e *Engine) info(h *host, now time.Time) HostInfo {
	rec := h.rec
	rec.Sources = append([]string(nil), rec.Sources...)
	rec.Addresses = append([]AddressChange(nil), rec.Addresses...)
	hs, configured := e.set.Hosts[h.rec.Name]
	hi := HostInfo{
		HostRecord:      rec,
		Interval:        e.interval(h),
		Grace:           e.grace(h),
		RTT:             h.rtt,
		RTTSmoothed:     h.srtt,
		Plugins:         make(map[string]map[string]any, len(h.pluginTime)),
		PluginTimes:     make(map[string]time.Time, len(h.pluginTime)),
		Managers:        append([]string(nil), hs.Managers...),
		Monitors:        append([]string(nil), hs.Monitors...),
		Watch:           !configured || hs.Watch,
		ThresholdConfig: append([]string(nil), hs.ThresholdConfig...),
	}
	hi.Owner = e.ownerOf(h)
	for k := range h.pluginTime {
		if d := h.pluginData(k); d != nil {
			hi.Plugins[k] = d
		}
	}
	for k, v := range h.pluginTime {
		hi.PluginTimes[k] = v
	}
	hi.Alerts = e.alertsOf(h, now, AlertFilter{All: true})
	return hi
}

// alertsOf lists a host's alerts passing f (e.mu held), sorted.
func (e *Engine) alertsOf(h *host, now time.Time, f AlertFilter) []AlertInfo {
	var out []AlertInfo
	for _, st := range h.alertList {
		if !f.All && st.Level == alert.OK {
			continue
		}
		if threshold.Severity(st.Level) < threshold.Severity(f.MinLevel) {
			continue
		}
		s := *st
		if s.Ack != nil {
			a := *s.Ack
			s.Ack = &a
		}
		env := e.env(h, st, now, false)
		out = append(out, AlertInfo{State: s, Silenced: env.Silenced, Held: env.Held})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Key, out[j].Key
		if a.Host != b.Host {
			return a.Host < b.Host
		}
		if a.Plugin != b.Plugin {
			return a.Plugin < b.Plugin
		}
		return a.Field < b.Field
	})
	return out
}

// Alerts returns the alerts passing the filter, sorted by host, plugin and
// field.
func (e *Engine) Alerts(f AlertFilter) []AlertInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clock()
	var out []AlertInfo
	for _, name := range sortedNames(e.hosts) {
		if f.Host != "" && name != f.Host {
			continue
		}
		out = append(out, e.alertsOf(e.hosts[name], now, f)...)
	}
	return out
}

// History returns the in-memory samples of a host's field since a time,
// oldest first. field is "plugin.path" ("cpu_monitor.cpu_percent") or
// "rtt" (milliseconds). Samples are kept to the second, values as float32.
func (e *Engine) History(hostName, field string, since time.Time) ([]Sample, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	h := e.hosts[hostName]
	if h == nil {
		return nil, false
	}
	r, c := h.column(field)
	if r == nil {
		return nil, false
	}
	return r.since(c, since), true
}

// column finds a field's series and column (e.mu held); nil when the
// host has no samples of it.
func (h *host) column(field string) (*series, int) {
	for plugin, r := range h.series {
		path := ""
		switch {
		case field == plugin:
		case len(field) > len(plugin) && field[len(plugin)] == '.' && field[:len(plugin)] == plugin:
			path = field[len(plugin)+1:]
		default:
			continue
		}
		cur := 0
		if c := r.sch.col(path, &cur); c >= 0 && r.has(c) {
			return r, c
		}
	}
	return nil, 0
}

// Fields lists the fields of a host that have sample history, sorted.
func (e *Engine) Fields(hostName string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	h := e.hosts[hostName]
	if h == nil {
		return nil
	}
	var out []string
	for _, r := range h.series {
		for c, name := range r.sch.names {
			if r.has(c) {
				out = append(out, name)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Silences returns the silences not yet ended, sorted by start.
func (e *Engine) Silences() []alert.Silence {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := append([]alert.Silence(nil), e.silences...)
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

func sortedNames[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

package monitor

import (
	"math"
	"net"
	"sort"
	"time"

	"github.com/mbvm/mb/monitor/alert"
)

// maxAddresses bounds a host's address history.
const maxAddresses = 16

// host is the engine's mutable model of one host (guarded by Engine.mu).
type host struct {
	rec HostRecord
	// idx is the host's index in Engine.list; iv and grace its interval
	// and grace, computed for the settings of generation gen.
	idx       int
	gen       uint64
	iv, grace time.Duration
	// announced is the interval the source announced (0: none).
	announced time.Duration
	// forcedDown: a source reported it down (crash); cleared by the next
	// observation.
	forcedDown bool
	rtt, srtt  time.Duration
	savedSeen  time.Time // LastSeen when last saved by Tick
	owner      string    // claimed by the host itself
	plugins    map[string]map[string]any
	pluginTime map[string]time.Time
	// series holds the sample history by plugin ("rtt" for the RTT).
	series map[string]*series
	// calm: every alert is quiet (Tick skips them); cleared by any change
	// that leaves one that is not.
	calm bool
	// alertList holds the host's alert states.
	alertList []*alert.State
}

func newHost(name string) *host {
	return &host{
		rec:        HostRecord{Name: name, Reach: Unknown},
		plugins:    map[string]map[string]any{},
		pluginTime: map[string]time.Time{},
		series:     map[string]*series{},
	}
}

// findAlert returns the state of an alert, nil when there is none. A host
// has a few alerts (its fields with rules): a scan beats a map.
func (h *host) findAlert(plugin, field string) *alert.State {
	for _, st := range h.alertList {
		if st.Key.Field == field && st.Key.Plugin == plugin {
			return st
		}
	}
	return nil
}

// alert returns the state of an alert, creating it.
func (h *host) alert(plugin, field string) *alert.State {
	st := h.findAlert(plugin, field)
	if st == nil {
		st = &alert.State{Key: alert.Key{Host: h.rec.Name, Plugin: plugin, Field: field}}
		h.alertList = append(h.alertList, st)
	}
	return st
}

// dropAlert forgets an alert state.
func (h *host) dropAlert(st *alert.State) {
	for i, x := range h.alertList {
		if x == st {
			h.alertList = append(h.alertList[:i], h.alertList[i+1:]...)
			break
		}
	}
}

// setAddress records the address a report came from; it reports whether
// it changed.
func (h *host) setAddress(addr string, now time.Time) bool {
	if a, _, err := net.SplitHostPort(addr); err == nil {
		addr = a
	}
	if n := len(h.rec.Addresses); n > 0 && h.rec.Addresses[n-1].Address == addr {
		return false
	}
	h.rec.Addresses = append(h.rec.Addresses, AddressChange{Address: addr, Since: now})
	if len(h.rec.Addresses) > maxAddresses {
		h.rec.Addresses = append([]AddressChange(nil), h.rec.Addresses[len(h.rec.Addresses)-maxAddresses:]...)
	}
	return true
}

// setSource records the reporting source; it reports whether it changed.
func (h *host) setSource(src string) bool {
	if src == "" || src == h.rec.Source {
		return false
	}
	h.rec.Source = src
	for _, s := range h.rec.Sources {
		if s == src {
			return true
		}
	}
	h.rec.Sources = append(h.rec.Sources, src)
	return true
}

// schema is the sorted field list of a plugin's reports, shared by every
// host whose reports have the same fields (interned by the engine).
type schema struct {
	plugin string
	paths  []string   // sorted field paths ("" for a plugin that is one value: rtt)
	names  []string   // plugin.path (plugin alone for ""), for samples
	segs   [][]string // the keys of each path in the report's nested maps
}

// col finds a path's column, trying *cur first (paths come sorted, so
// the next column is usually the one); -1 when it is not in the schema.
func (s *schema) col(path string, cur *int) int {
	if c := *cur; c < len(s.paths) && s.paths[c] == path {
		*cur = c + 1
		return c
	}
	c := sort.SearchStrings(s.paths, path)
	if c < len(s.paths) && s.paths[c] == path {
		*cur = c + 1
		return c
	}
	return -1
}

// series is the bounded sample history of one plugin of one host: the
// times of its last reports and, per field of its schema, the values (as
// float32; NaN where a report lacked the field). A field costs 4 bytes a
// sample, and the report's time 4 more for all its fields.
type series struct {
	sch   *schema
	size  int
	times []uint32  // ring of report times (Unix seconds)
	vals  []float32 // slot s holds vals[s*n : (s+1)*n], n the schema's fields
	next  int       // the slot the next report takes
	// compact: the last report is kept in last and kinds (latest.go)
	// instead of as its map.
	compact bool
	last    []uint64
	kinds   []uint8
}

// slot starts a report at t and returns its slot, every field NaN.
func (r *series) slot(t time.Time) int {
	if len(r.times) < r.size {
		r.times = append(r.times, 0)
		r.next = len(r.times) - 1
	}
	s := r.next
	r.times[s] = uint32(t.Unix())
	nan := float32(math.NaN())
	n := len(r.sch.paths)
	row := r.vals[s*n : (s+1)*n]
	for c := range row {
		row[c] = nan
	}
	r.next = s + 1
	if r.next >= r.size {
		r.next = 0
	}
	return s
}

// row returns slot s's values, in schema order.
func (r *series) row(s int) []float32 {
	n := len(r.sch.paths)
	return r.vals[s*n : (s+1)*n]
}

// set stores a value of column c in slot s.
func (r *series) set(c, s int, v float64) { r.vals[s*len(r.sch.paths)+c] = float32(v) }

// relayout moves the values to a new schema (a superset of the old one)
// and ring size.
func (r *series) relayout(sch *schema, size int) {
	vals := make([]float32, len(sch.paths)*size)
	nan := float32(math.NaN())
	for i := range vals {
		vals[i] = nan
	}
	times := make([]uint32, 0, size)
	// Oldest first, keeping the newest size reports.
	n := len(r.times)
	start := 0
	if n == r.size {
		start = r.next
	}
	skip := max(0, n-size)
	for i := skip; i < n; i++ {
		from := (start + i) % max(r.size, 1)
		to := len(times)
		times = append(times, r.times[from])
		if r.sch == nil {
			continue
		}
		for oc, p := range r.sch.paths {
			if nc := sort.SearchStrings(sch.paths, p); nc < len(sch.paths) && sch.paths[nc] == p {
				vals[to*len(sch.paths)+nc] = r.vals[from*len(r.sch.paths)+oc]
			}
		}
	}
	r.sch, r.size, r.times, r.vals = sch, size, times, vals
	r.next = len(times) % size
	r.dropLast()
}

// since returns column c's samples at or after t, oldest first.
func (r *series) since(c int, t time.Time) []Sample {
	out := make([]Sample, 0, len(r.times))
	from := t.Truncate(time.Second)
	n := len(r.times)
	start := 0
	if n == r.size {
		start = r.next
	}
	for i := 0; i < n; i++ {
		s := (start + i) % r.size
		v := r.vals[s*len(r.sch.paths)+c]
		if v != v { // NaN: the report lacked the field
			continue
		}
		st := time.Unix(int64(r.times[s]), 0).UTC()
		if st.Before(from) {
			continue
		}
		out = append(out, Sample{Time: st, Value: float64(v)})
	}
	return out
}

// has reports whether column c has any sample.
func (r *series) has(c int) bool {
	for s := range r.times {
		if v := r.vals[s*len(r.sch.paths)+c]; v == v {
			return true
		}
	}
	return false
}

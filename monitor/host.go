package monitor

import (
	"net"
	"time"

	"github.com/mbvm/mb/monitor/alert"
)

// maxAddresses bounds a host's address history.
const maxAddresses = 16

// host is the engine's mutable model of one host (guarded by Engine.mu).
type host struct {
	rec HostRecord
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
	rings      map[string]*ring
	// alerts by plugin, then field.
	alerts map[string]map[string]*alert.State
}

func newHost(name string) *host {
	return &host{
		rec:        HostRecord{Name: name, Reach: Unknown},
		plugins:    map[string]map[string]any{},
		pluginTime: map[string]time.Time{},
		rings:      map[string]*ring{},
		alerts:     map[string]map[string]*alert.State{},
	}
}

// alert returns the state of an alert, creating it.
func (h *host) alert(plugin, field string) *alert.State {
	m := h.alerts[plugin]
	if m == nil {
		m = map[string]*alert.State{}
		h.alerts[plugin] = m
	}
	st := m[field]
	if st == nil {
		st = &alert.State{Key: alert.Key{Host: h.rec.Name, Plugin: plugin, Field: field}}
		m[field] = st
	}
	return st
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

// ring is a bounded history of one field's samples, stored compactly
// (8 bytes a sample: seconds and a float32 value).
type ring struct {
	buf  []packed
	next int
}

type packed struct {
	t uint32
	v float32
}

func (r *ring) add(t time.Time, v float64, size int) {
	p := packed{t: uint32(t.Unix()), v: float32(v)}
	if len(r.buf) < size {
		if r.buf == nil {
			r.buf = make([]packed, 0, size)
		}
		r.buf = append(r.buf, p)
		return
	}
	r.buf[r.next] = p
	r.next = (r.next + 1) % len(r.buf)
}

// since returns the samples at or after t, oldest first.
func (r *ring) since(t time.Time) []Sample {
	out := make([]Sample, 0, len(r.buf))
	for i := 0; i < len(r.buf); i++ {
		p := r.buf[(r.next+i)%len(r.buf)]
		st := time.Unix(int64(p.t), 0).UTC()
		if st.Before(t.Truncate(time.Second)) {
			continue
		}
		out = append(out, Sample{Time: st, Value: float64(p.v)})
	}
	return out
}

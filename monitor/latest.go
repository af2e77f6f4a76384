package monitor

import (
	"math"
	"slices"

	"github.com/mbvm/mb/monitor/threshold"
)

// A plugin report whose leaves are all Go numbers or booleans (every
// report mb's daemon maps from a VM) is not kept as its map: its values
// are kept exactly in the plugin's series (8 bytes and a kind per field,
// against some 90 bytes of map, key and boxed value) and the map is built
// again when asked for. Any other report (strings, lists, empty maps,
// NaN) is kept as it came.

// Kinds of a kept leaf value: the Go type it came as.
const (
	kindNone uint8 = iota // absent from the last report
	kindFloat64
	kindFloat32
	kindInt
	kindInt64
	kindInt32
	kindUint
	kindUint64
	kindUint32
	kindBool
)

// rawOf returns a leaf's kind and bits; kindNone for a value that is not
// kept this way.
func rawOf(x any) (uint8, uint64) {
	switch t := x.(type) {
	case float64:
		return kindFloat64, math.Float64bits(t)
	case float32:
		return kindFloat32, uint64(math.Float32bits(t))
	case int:
		return kindInt, uint64(t)
	case int64:
		return kindInt64, uint64(t)
	case int32:
		return kindInt32, uint64(t)
	case uint:
		return kindUint, uint64(t)
	case uint64:
		return kindUint64, t
	case uint32:
		return kindUint32, uint64(t)
	case bool:
		if t {
			return kindBool, 1
		}
		return kindBool, 0
	}
	return kindNone, 0
}

// valueOf turns kind and bits back into the value.
func valueOf(kind uint8, bits uint64) any {
	switch kind {
	case kindFloat64:
		return math.Float64frombits(bits)
	case kindFloat32:
		return math.Float32frombits(uint32(bits))
	case kindInt:
		return int(bits)
	case kindInt64:
		return int64(bits)
	case kindInt32:
		return int32(bits)
	case kindUint:
		return uint(bits)
	case kindUint64:
		return bits
	case kindUint32:
		return uint32(bits)
	case kindBool:
		return bits == 1
	}
	return nil
}

// collect appends the numeric leaves of data to leaves in path order
// (threshold.Walk's order and paths; a leaf that is not a number, or is NaN
// or infinite, is data, not a sample) and reports whether the report can
// be kept compactly: every leaf a finite Go number or a boolean, and no map
// empty.
func collect(prefix string, data map[string]any, leaves []leaf) ([]leaf, bool) {
	if len(data) == 0 {
		return leaves, false
	}
	var buf [32]string // no allocation for the usual few keys
	keys := buf[:0]
	for k := range data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	compact := true
	for _, k := range keys {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		x := data[k]
		if sub, ok := x.(map[string]any); ok {
			var c bool
			leaves, c = collect(p, sub, leaves)
			compact = compact && c
			continue
		}
		v, ok := threshold.ToFloat(x)
		if !ok || math.IsNaN(v) || math.IsInf(v, 0) {
			compact = false
			continue
		}
		kind, bits := rawOf(x)
		if kind == kindNone {
			compact = false
		}
		leaves = append(leaves, leaf{path: p, v: v, kind: kind, bits: bits})
	}
	return leaves, compact
}

// segments returns the key path of every leaf of data by its joined path
// (as threshold.Walk joins them).
func segments(data map[string]any, prefix string, segs []string, out map[string][]string) {
	for k, x := range data {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		s := append(segs[:len(segs):len(segs)], k)
		if sub, ok := x.(map[string]any); ok {
			segments(sub, p, s, out)
			continue
		}
		out[p] = s
	}
}

// data builds the last report of a compact series again.
func (r *series) data() map[string]any {
	out := map[string]any{}
	for c, kind := range r.kinds {
		if kind == kindNone {
			continue
		}
		segs := r.sch.segs[c]
		m := out
		for _, s := range segs[:len(segs)-1] {
			sub, ok := m[s].(map[string]any)
			if !ok {
				sub = map[string]any{}
				m[s] = sub
			}
			m = sub
		}
		m[segs[len(segs)-1]] = valueOf(kind, r.last[c])
	}
	return out
}

// keepLast records the exact values of a compact report (its leaves in
// column order are in leaves, each with its raw value).
func (r *series) keepLast(leaves []leaf) {
	n := len(r.sch.paths)
	if cap(r.last) < n {
		r.last = make([]uint64, n)
		r.kinds = make([]uint8, n)
	}
	r.last, r.kinds = r.last[:n], r.kinds[:n]
	clear(r.kinds)
	for _, lf := range leaves {
		r.kinds[lf.col], r.last[lf.col] = lf.kind, lf.bits
	}
	r.compact = true
}

// dropLast forgets kept values (the report was kept as its map).
func (r *series) dropLast() {
	r.last, r.kinds, r.compact = nil, nil, false
}

// pluginData returns the last report of a plugin (nil when none).
func (h *host) pluginData(plugin string) map[string]any {
	if m, ok := h.plugins[plugin]; ok {
		return m
	}
	if r := h.series[plugin]; r != nil && r.compact {
		return r.data()
	}
	return nil
}

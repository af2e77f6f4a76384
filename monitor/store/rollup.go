package store

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"sync"
	"time"
	"unsafe"

	"github.com/mbvm/mb/monitor"
)

// Rollup resolutions.
const (
	Minute = time.Minute
	Hour   = time.Hour
)

// DefaultRetention is how long rollups are kept by default.
const DefaultRetention = 7 * 24 * time.Hour

// Rollup is the summary of one field over one bucket. Values are kept as
// float32 (about 7 significant digits), like the in-memory samples.
type Rollup struct {
	Host, Field string
	// Resolution is Minute or Hour; Start the bucket's start.
	Resolution time.Duration
	Start      time.Time
	Min, Max   float64
	Mean       float64
	Count      int64
	// Last is the newest value in the bucket, at LastAt (to the second).
	Last   float64
	LastAt time.Time
}

// agg is one field's aggregate over one bucket (32 bytes).
type agg struct {
	field          int32  // Rollups.names index in memory; a field id in a row
	lastAt         uint32 // seconds after the bucket's start
	count          uint32
	min, max, last float32
	sum            float64
}

func (a *agg) add(v float32, at uint32) {
	if a.count == 0 {
		a.min, a.max = v, v
	} else {
		a.min = min(a.min, v)
		a.max = max(a.max, v)
	}
	a.sum += float64(v)
	a.count++
	if at >= a.lastAt || a.count == 1 {
		a.last, a.lastAt = v, at
	}
}

// merge adds b (an aggregate of the same field and bucket) into a.
func (a *agg) merge(b *agg) {
	if b.count == 0 {
		return
	}
	if a.count == 0 {
		*a = *b
		return
	}
	a.min = min(a.min, b.min)
	a.max = max(a.max, b.max)
	a.sum += b.sum
	a.count += b.count
	if b.lastAt >= a.lastAt {
		a.last, a.lastAt = b.last, b.lastAt
	}
}

// minuteAggs is one host's aggregates for one minute.
type minuteAggs struct {
	start int64 // Unix seconds
	aggs  []agg
	hint  int // where the next field is probably found
}

// find returns the aggregate of a field, adding it.
func (m *minuteAggs) find(field int32) *agg {
	n := len(m.aggs)
	for i := 0; i < n; i++ {
		j := m.hint + i
		if j >= n {
			j -= n
		}
		if m.aggs[j].field == field {
			m.hint = j + 1
			return &m.aggs[j]
		}
	}
	m.aggs = append(m.aggs, agg{field: field})
	m.hint = 0
	return &m.aggs[n]
}

// hostAggs is one host's open minutes (normally one or two).
type hostAggs struct {
	name string
	mins []*minuteAggs
}

// Rollups aggregates samples in memory per host, field and minute, and
// writes them to the store: one row per host and minute, holding every
// field of that minute in a compact blob (see encodeRow), written once the
// minute is over (FlushBefore) in one transaction with prepared
// statements. Hour rows are computed from the minute rows of an hour once
// a later hour is seen. It is the engine's SampleSink.
//
// Memory holds 32 bytes per field and open minute, and the field names
// once for all hosts.
type Rollups struct {
	store *Store

	mu      sync.Mutex
	hosts   map[string]*hostAggs
	last    *hostAggs // the host of the previous sample (samples come by host)
	pending int
	// names interns field names: a field's in-memory number is its index.
	names   []string
	nameIdx map[string]int32
	// lists caches the field numbers of the engine's field lists by their
	// address (AddReport); keep holds those lists so no address is reused.
	lists map[*string][]int32
	keep  [][]string

	// Flush state (flushMu held): field and host ids in the database.
	flushMu  sync.Mutex
	fieldIDs []int64 // by in-memory number; 0: not known yet
	hostIDs  map[string]int64
	loaded   bool
}

var _ monitor.ReportSink = (*Rollups)(nil)

// NewRollups makes an aggregator writing to s.
func (s *Store) NewRollups() *Rollups {
	return &Rollups{store: s, hosts: map[string]*hostAggs{}, nameIdx: map[string]int32{}, hostIDs: map[string]int64{}, lists: map[*string][]int32{}}
}

// AddSample adds one sample (NaN and infinities are ignored).
func (r *Rollups) AddSample(host, field string, t time.Time, v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	sec := t.Unix()
	start := sec - mod(sec, 60)
	r.mu.Lock()
	m := r.minute(host, start)
	id := r.intern(field)
	before := len(m.aggs)
	m.find(id).add(float32(v), uint32(sec-start))
	r.pending += len(m.aggs) - before
	r.mu.Unlock()
}

// AddReport adds every field of one report (monitor.ReportSink): names
// is the engine's shared field list, and its field numbers are looked up
// once per list.
func (r *Rollups) AddReport(host string, t time.Time, names []string, values []float32) {
	if len(names) == 0 {
		return
	}
	sec := t.Unix()
	start := sec - mod(sec, 60)
	at := uint32(sec - start)
	r.mu.Lock()
	ids := r.lists[unsafe.SliceData(names)]
	if len(ids) != len(names) {
		ids = make([]int32, len(names))
		for i, name := range names {
			ids[i] = r.intern(name)
		}
		r.lists[unsafe.SliceData(names)] = ids
		r.keep = append(r.keep, names)
	}
	m := r.minute(host, start)
	for i, v := range values {
		if v != v || math.IsInf(float64(v), 0) {
			continue
		}
		before := len(m.aggs)
		m.find(ids[i]).add(v, at)
		r.pending += len(m.aggs) - before
	}
	r.mu.Unlock()
}

// intern returns a field name's number (r.mu held).
func (r *Rollups) intern(field string) int32 {
	id, ok := r.nameIdx[field]
	if !ok {
		id = int32(len(r.names))
		r.names = append(r.names, field)
		r.nameIdx[field] = id
	}
	return id
}

// minute returns a host's aggregates of the minute starting at start,
// adding them (r.mu held).
func (r *Rollups) minute(host string, start int64) *minuteAggs {
	h := r.last
	if h == nil || h.name != host {
		h = r.hosts[host]
		if h == nil {
			h = &hostAggs{name: host}
			r.hosts[host] = h
		}
		r.last = h
	}
	for _, x := range h.mins {
		if x.start == start {
			return x
		}
	}
	m := &minuteAggs{start: start}
	if n := len(h.mins); n > 0 {
		m.aggs = make([]agg, 0, len(h.mins[n-1].aggs))
	}
	h.mins = append(h.mins, m)
	return m
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// Pending is the number of field aggregates waiting to be written.
func (r *Rollups) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pending
}

// maxOpen is how many minutes of one host are kept in memory at most.
const maxOpen = 3

// hostMinute is one row to write.
type hostMinute struct {
	host string
	*minuteAggs
}

// take removes the minutes that started before end from memory (all of
// them for end 0), with the field names known now.
func (r *Rollups) take(end int64) ([]hostMinute, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []hostMinute
	for name, h := range r.hosts {
		// A host whose clock runs ahead would keep its minutes in memory
		// until the real time catches up: beyond maxOpen minutes, the
		// oldest go out anyway.
		extra := len(h.mins) - maxOpen
		kept := h.mins[:0]
		for i, m := range h.mins {
			if end == 0 || m.start+60 <= end || i < extra {
				out = append(out, hostMinute{name, m})
				r.pending -= len(m.aggs)
			} else {
				kept = append(kept, m)
			}
		}
		clear(h.mins[len(kept):])
		h.mins = kept
		if len(kept) == 0 {
			delete(r.hosts, name)
			if r.last == h {
				r.last = nil
			}
		}
	}
	return out, r.names[:len(r.names):len(r.names)]
}

// putBack returns minutes a failed flush took.
func (r *Rollups) putBack(batch []hostMinute) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, hm := range batch {
		h := r.hosts[hm.host]
		if h == nil {
			h = &hostAggs{name: hm.host}
			r.hosts[hm.host] = h
		}
		var cur *minuteAggs
		for _, x := range h.mins {
			if x.start == hm.start {
				cur = x
			}
		}
		if cur == nil {
			h.mins = append(h.mins, hm.minuteAggs)
			r.pending += len(hm.aggs)
			continue
		}
		for i := range hm.aggs {
			before := len(cur.aggs)
			cur.find(hm.aggs[i].field).merge(&hm.aggs[i])
			r.pending += len(cur.aggs) - before
		}
	}
}

// Flush writes every aggregate in memory, the minute in progress
// included (a later flush merges into its row). Use it on shutdown.
func (r *Rollups) Flush(ctx context.Context) error { return r.flush(ctx, 0) }

// FlushBefore writes the minutes that ended at or before t: each minute
// is written once, when it is over. Flushes must not run concurrently
// with each other.
func (r *Rollups) FlushBefore(ctx context.Context, t time.Time) error {
	end := t.Unix()
	if end <= 0 {
		return nil
	}
	return r.flush(ctx, end)
}

func (r *Rollups) flush(ctx context.Context, end int64) error {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	batch, names := r.take(end)
	if len(batch) == 0 {
		return nil
	}
	fieldIDs := append([]int64(nil), r.fieldIDs...)
	added := map[string]int64{} // host ids new in this flush
	err := r.store.tx(ctx, func(tx *sql.Tx) error {
		if err := r.resolve(ctx, tx, batch, names, &fieldIDs, added); err != nil {
			return err
		}
		hostID := func(name string) int64 {
			if id, ok := r.hostIDs[name]; ok {
				return id
			}
			return added[name]
		}
		return writeMinutes(ctx, tx, batch, fieldIDs, hostID)
	})
	if err != nil {
		r.putBack(batch)
		return fmt.Errorf("rollups: write %d host minutes: %w", len(batch), err)
	}
	r.fieldIDs = fieldIDs
	for k, v := range added {
		r.hostIDs[k] = v
	}
	return nil
}

// resolve finds (or adds) the ids of the batch's fields, and of its hosts
// not in r.hostIDs (into added).
func (r *Rollups) resolve(ctx context.Context, tx *sql.Tx, batch []hostMinute, names []string, fieldIDs *[]int64, added map[string]int64) error {
	if !r.loaded {
		ids, err := loadNames(ctx, tx, "rollup_hosts")
		if err != nil {
			return err
		}
		for k, v := range ids {
			r.hostIDs[k] = v
		}
		r.loaded = true
	}
	var fieldByName map[string]int64
	for len(*fieldIDs) < len(names) {
		*fieldIDs = append(*fieldIDs, 0)
	}
	for i, id := range *fieldIDs {
		if id != 0 {
			continue
		}
		if fieldByName == nil {
			var err error
			if fieldByName, err = loadNames(ctx, tx, "rollup_fields"); err != nil {
				return err
			}
		}
		id, err := nameID(ctx, tx, "rollup_fields", fieldByName, names[i])
		if err != nil {
			return err
		}
		(*fieldIDs)[i] = id
	}
	var hostByName map[string]int64
	for _, hm := range batch {
		if _, ok := r.hostIDs[hm.host]; ok {
			continue
		}
		if _, ok := added[hm.host]; ok {
			continue
		}
		if hostByName == nil {
			hostByName = map[string]int64{}
		}
		id, err := nameID(ctx, tx, "rollup_hosts", hostByName, hm.host)
		if err != nil {
			return err
		}
		added[hm.host] = id
	}
	return nil
}

// loadNames reads a name table (id, name).
func loadNames(ctx context.Context, tx *sql.Tx, table string) (map[string]int64, error) {
	rows, err := tx.QueryContext(ctx, "SELECT id, name FROM "+table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var id int64
		var name string
		if err := rows.Scan(&id, &name); err != nil {
			return nil, err
		}
		out[name] = id
	}
	return out, rows.Err()
}

// nameID returns the id of a name in a name table, adding it.
func nameID(ctx context.Context, tx *sql.Tx, table string, known map[string]int64, name string) (int64, error) {
	if id, ok := known[name]; ok {
		return id, nil
	}
	var id int64
	err := tx.QueryRowContext(ctx, "INSERT INTO "+table+" (name) VALUES (?) ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id", name).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("%s %q: %w", table, name, err)
	}
	known[name] = id
	return id, nil
}

// writeMinutes writes the minute rows of a batch (merging into rows
// already there) and the hour rows that became due, in tx.
func writeMinutes(ctx context.Context, tx *sql.Tx, batch []hostMinute, fieldIDs []int64, hostID func(string) int64) error {
	ins, err := tx.PrepareContext(ctx, "INSERT INTO rollups (res, bucket, host, data) VALUES (60, ?, ?, ?) ON CONFLICT DO NOTHING")
	if err != nil {
		return err
	}
	defer ins.Close()
	var get, upd *sql.Stmt
	touched := map[int64]bool{} // hours given new or changed minute rows
	var newest int64
	var buf []byte
	rowAggs := make([]agg, 0, 64)
	for _, hm := range batch {
		rowAggs = rowAggs[:0]
		for _, a := range hm.aggs {
			a.field = int32(fieldIDs[a.field])
			rowAggs = append(rowAggs, a)
		}
		buf = encodeRow(buf[:0], rowAggs)
		hid := hostID(hm.host)
		res, err := ins.ExecContext(ctx, hm.start, hid, buf)
		if err != nil {
			return err
		}
		touched[hm.start-mod(hm.start, 3600)] = true
		newest = max(newest, hm.start)
		if n, _ := res.RowsAffected(); n == 1 {
			continue
		}
		// A row for this minute is there (a flush of the minute in
		// progress, or late samples): merge into it.
		if get == nil {
			if get, err = tx.PrepareContext(ctx, "SELECT data FROM rollups WHERE res = 60 AND bucket = ? AND host = ?"); err != nil {
				return err
			}
			defer get.Close()
			if upd, err = tx.PrepareContext(ctx, "UPDATE rollups SET data = ? WHERE res = 60 AND bucket = ? AND host = ?"); err != nil {
				return err
			}
			defer upd.Close()
		}
		var old []byte
		if err := get.QueryRowContext(ctx, hm.start, hid).Scan(&old); err != nil {
			return err
		}
		merged, err := decodeRow(old, nil)
		if err != nil {
			return fmt.Errorf("minute row %d of %s: %w", hm.start, hm.host, err)
		}
		merged = mergeAggs(merged, rowAggs)
		buf = encodeRow(buf[:0], merged)
		if _, err := upd.ExecContext(ctx, buf, hm.start, hid); err != nil {
			return err
		}
	}
	return rollHours(ctx, tx, touched, newest-mod(newest, 3600))
}

// mergeAggs merges b into a (aggregates keyed by field). Rows of one
// host usually list the same fields in the same order: a[i] is tried first.
func mergeAggs(a, b []agg) []agg {
	for i := range b {
		if i < len(a) && a[i].field == b[i].field {
			a[i].merge(&b[i])
			continue
		}
		found := false
		for j := range a {
			if a[j].field == b[i].field {
				a[j].merge(&b[i])
				found = true
				break
			}
		}
		if !found {
			a = append(a, b[i])
		}
	}
	return a
}

// rollHours writes the hour rows of the touched hours that are over
// (before current, the hour of the newest minute row), and of any hour
// before current that has minute rows but no hour row yet (left by a crash
// or a quiet period).
func rollHours(ctx context.Context, tx *sql.Tx, touched map[int64]bool, current int64) error {
	var lastDone, newest sql.NullInt64
	if err := tx.QueryRowContext(ctx, "SELECT max(bucket) FROM rollups WHERE res = 3600").Scan(&lastDone); err != nil {
		return err
	}
	if err := tx.QueryRowContext(ctx, "SELECT max(bucket) FROM rollups WHERE res = 60").Scan(&newest); err != nil {
		return err
	}
	if newest.Valid {
		current = max(current, newest.Int64-mod(newest.Int64, 3600))
	}
	hours := map[int64]bool{}
	for h := range touched {
		if h < current {
			hours[h] = true
		}
	}
	from := int64(math.MinInt64)
	if lastDone.Valid {
		from = lastDone.Int64 + 3600
	}
	for {
		var first sql.NullInt64
		if err := tx.QueryRowContext(ctx, "SELECT min(bucket) FROM rollups WHERE res = 60 AND bucket >= ? AND bucket < ?", from, current).Scan(&first); err != nil {
			return err
		}
		if !first.Valid {
			break
		}
		h := first.Int64 - mod(first.Int64, 3600)
		hours[h] = true
		from = h + 3600
	}
	for h := range hours {
		if err := rollHour(ctx, tx, h); err != nil {
			return fmt.Errorf("hour %d: %w", h, err)
		}
	}
	return nil
}

// hourChunk is how many hosts (by id) rollHour merges at a time, which
// bounds its memory: about 2 KB a host.
const hourChunk = 1000

// rollHour computes the hour rows of the hour starting at h from its
// minute rows, replacing any earlier ones. It goes through the hosts a
// chunk at a time, reading each minute's rows of the chunk's hosts.
func rollHour(ctx context.Context, tx *sql.Tx, h int64) error {
	var top sql.NullInt64
	if err := tx.QueryRowContext(ctx, "SELECT max(id) FROM rollup_hosts").Scan(&top); err != nil {
		return err
	}
	if !top.Valid {
		return nil
	}
	get, err := tx.PrepareContext(ctx, "SELECT host, data FROM rollups WHERE res = 60 AND bucket = ? AND host >= ? AND host < ?")
	if err != nil {
		return err
	}
	defer get.Close()
	put, err := tx.PrepareContext(ctx, "INSERT OR REPLACE INTO rollups (res, bucket, host, data) VALUES (3600, ?, ?, ?)")
	if err != nil {
		return err
	}
	defer put.Close()
	var scratch []agg
	var buf []byte
	for lo := int64(0); lo <= top.Int64; lo += hourChunk {
		byHost := map[int64][]agg{}
		for b := h; b < h+3600; b += 60 {
			rows, err := get.QueryContext(ctx, b, lo, lo+hourChunk)
			if err != nil {
				return err
			}
			for rows.Next() {
				var host int64
				var data []byte
				if err := rows.Scan(&host, &data); err != nil {
					rows.Close()
					return err
				}
				scratch, err = decodeRow(data, scratch[:0])
				if err != nil {
					rows.Close()
					return fmt.Errorf("minute row %d of host %d: %w", b, host, err)
				}
				for i := range scratch { // times relative to the hour
					scratch[i].lastAt += uint32(b - h)
				}
				byHost[host] = mergeAggs(byHost[host], scratch)
			}
			if err := rows.Close(); err != nil {
				return err
			}
		}
		for host, aggs := range byHost {
			buf = encodeRow(buf[:0], aggs)
			if _, err := put.ExecContext(ctx, h, host, buf); err != nil {
				return err
			}
		}
	}
	return nil
}

// Rollups reads a field's rollups at a resolution (Minute or Hour) from a
// time on, oldest first.
func (s *Store) Rollups(ctx context.Context, host, field string, res time.Duration, since time.Time) ([]Rollup, error) {
	step := int64(res / time.Second)
	fail := func(err error) ([]Rollup, error) {
		return nil, fmt.Errorf("rollups of %s %s: %w", host, field, err)
	}
	var hid, fid int64
	err := s.db.QueryRowContext(ctx, "SELECT (SELECT id FROM rollup_hosts WHERE name = ?), (SELECT id FROM rollup_fields WHERE name = ?)", host, field).Scan(
		(*nullInt)(&hid), (*nullInt)(&fid))
	if err != nil {
		return fail(err)
	}
	if hid == 0 || fid == 0 {
		return nil, nil
	}
	var first, last sql.NullInt64
	if err := s.db.QueryRowContext(ctx, "SELECT min(bucket), max(bucket) FROM rollups WHERE res = ?", step).Scan(&first, &last); err != nil {
		return fail(err)
	}
	if !first.Valid {
		return nil, nil
	}
	from := max(since.Unix()-mod(since.Unix(), step), first.Int64)
	stmt, err := s.db.PrepareContext(ctx, "SELECT data FROM rollups WHERE res = ? AND bucket = ? AND host = ?")
	if err != nil {
		return fail(err)
	}
	defer stmt.Close()
	var out []Rollup
	var aggs []agg
	// One lookup per bucket (rows are ordered by time, then host).
	for b := from; b <= last.Int64; b += step {
		var data []byte
		if err := stmt.QueryRowContext(ctx, step, b, hid).Scan(&data); err == sql.ErrNoRows {
			continue
		} else if err != nil {
			return fail(err)
		}
		if aggs, err = decodeRow(data, aggs[:0]); err != nil {
			return fail(err)
		}
		for _, a := range aggs {
			if int64(a.field) != fid {
				continue
			}
			r := Rollup{Host: host, Field: field, Resolution: res, Start: time.Unix(b, 0).UTC(),
				Min: float64(a.min), Max: float64(a.max), Count: int64(a.count), Last: float64(a.last),
				LastAt: time.Unix(b+int64(a.lastAt), 0).UTC()}
			if a.count > 0 {
				r.Mean = float64(float32(a.sum / float64(a.count)))
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// nullInt scans a NULL as 0.
type nullInt int64

func (n *nullInt) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*n = 0
	case int64:
		*n = nullInt(x)
	default:
		return fmt.Errorf("not an integer: %T", v)
	}
	return nil
}

// PruneRollups deletes rollups whose bucket started before now minus the
// retention of their resolution (0 means DefaultRetention). It returns the
// rows deleted (one row holds a host's fields for one bucket).
func (s *Store) PruneRollups(ctx context.Context, now time.Time, minuteKeep, hourKeep time.Duration) (int64, error) {
	if minuteKeep <= 0 {
		minuteKeep = DefaultRetention
	}
	if hourKeep <= 0 {
		hourKeep = DefaultRetention
	}
	var total int64
	for _, p := range []struct {
		res  int64
		keep time.Duration
	}{{60, minuteKeep}, {3600, hourKeep}} {
		res, err := s.db.ExecContext(ctx, "DELETE FROM rollups WHERE res = ? AND bucket < ?", p.res, now.Add(-p.keep).Unix())
		if err != nil {
			return total, fmt.Errorf("prune rollups: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
	}
	return total, nil
}

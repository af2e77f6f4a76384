package store

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/mbvm/mb/monitor"
)

// Rollup resolutions.
const (
	Minute = time.Minute
	Hour   = time.Hour
)

// DefaultRetention is how long rollups are kept by default.
const DefaultRetention = 7 * 24 * time.Hour

// Rollup is the summary of one field over one bucket.
type Rollup struct {
	Host, Field string
	// Resolution is Minute or Hour; Start the bucket's start.
	Resolution time.Duration
	Start      time.Time
	Min, Max   float64
	Mean       float64
	Count      int64
	// Last is the newest value in the bucket, at LastAt.
	Last   float64
	LastAt time.Time
}

type bucketKey struct {
	host, field string
	minute      int64 // Unix seconds of the minute's start
}

type agg struct {
	min, max, sum float64
	count         int64
	last          float64
	lastAt        int64 // Unix milliseconds
}

func (a *agg) add(v float64, at int64) {
	if a.count == 0 {
		a.min, a.max = v, v
	} else {
		a.min = math.Min(a.min, v)
		a.max = math.Max(a.max, v)
	}
	a.sum += v
	a.count++
	if at >= a.lastAt {
		a.last, a.lastAt = v, at
	}
}

func (a *agg) merge(b *agg) {
	if b.count == 0 {
		return
	}
	if a.count == 0 {
		*a = *b
		return
	}
	a.min = math.Min(a.min, b.min)
	a.max = math.Max(a.max, b.max)
	a.sum += b.sum
	a.count += b.count
	if b.lastAt >= a.lastAt {
		a.last, a.lastAt = b.last, b.lastAt
	}
}

// Rollups aggregates samples in memory per field and minute, and writes
// them to the store in one transaction per Flush (the minute rows, and the
// hour rows merged into). It is the engine's SampleSink. Memory holds one
// small aggregate per field and minute between flushes.
type Rollups struct {
	store *Store
	mu    sync.Mutex
	cur   map[bucketKey]*agg
}

var _ monitor.SampleSink = (*Rollups)(nil)

// NewRollups makes an aggregator writing to s.
func (s *Store) NewRollups() *Rollups {
	return &Rollups{store: s, cur: map[bucketKey]*agg{}}
}

// AddSample adds one sample (NaN and infinities are ignored).
func (r *Rollups) AddSample(host, field string, t time.Time, v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	k := bucketKey{host: host, field: field, minute: t.Unix() - mod(t.Unix(), 60)}
	r.mu.Lock()
	a := r.cur[k]
	if a == nil {
		a = &agg{}
		r.cur[k] = a
	}
	a.add(v, t.UnixMilli())
	r.mu.Unlock()
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// Pending is the number of aggregates waiting for Flush.
func (r *Rollups) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.cur)
}

const upsertRollup = `
INSERT INTO rollups (host, field, res, bucket, min, max, sum, count, last, last_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (host, field, res, bucket) DO UPDATE SET
	min = min(rollups.min, excluded.min),
	max = max(rollups.max, excluded.max),
	sum = rollups.sum + excluded.sum,
	count = rollups.count + excluded.count,
	last = CASE WHEN excluded.last_at >= rollups.last_at THEN excluded.last ELSE rollups.last END,
	last_at = max(rollups.last_at, excluded.last_at)`

// Flush writes what was aggregated since the last flush in one
// transaction. On failure the aggregates are kept for the next flush.
func (r *Rollups) Flush(ctx context.Context) error {
	r.mu.Lock()
	batch := r.cur
	r.cur = make(map[bucketKey]*agg, len(batch))
	r.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	err := r.store.tx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, upsertRollup)
		if err != nil {
			return err
		}
		defer stmt.Close()
		hours := make(map[bucketKey]*agg)
		for k, a := range batch {
			if _, err := stmt.ExecContext(ctx, k.host, k.field, 60, k.minute, a.min, a.max, a.sum, a.count, a.last, a.lastAt); err != nil {
				return err
			}
			hk := bucketKey{host: k.host, field: k.field, minute: k.minute - mod(k.minute, 3600)}
			h := hours[hk]
			if h == nil {
				h = &agg{}
				hours[hk] = h
			}
			h.merge(a)
		}
		for k, a := range hours {
			if _, err := stmt.ExecContext(ctx, k.host, k.field, 3600, k.minute, a.min, a.max, a.sum, a.count, a.last, a.lastAt); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		r.mu.Lock()
		for k, a := range batch {
			if cur := r.cur[k]; cur != nil {
				a.merge(cur)
			}
			r.cur[k] = a
		}
		r.mu.Unlock()
		return fmt.Errorf("rollups: flush %d aggregates: %w", len(batch), err)
	}
	return nil
}

// Rollups reads a field's rollups at a resolution (Minute or Hour) from a
// time on, oldest first.
func (s *Store) Rollups(ctx context.Context, host, field string, res time.Duration, since time.Time) ([]Rollup, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT bucket, min, max, sum, count, last, last_at FROM rollups
WHERE host = ? AND field = ? AND res = ? AND bucket >= ? ORDER BY bucket`,
		host, field, int64(res/time.Second), since.Unix()-mod(since.Unix(), int64(res/time.Second)))
	if err != nil {
		return nil, fmt.Errorf("rollups of %s %s: %w", host, field, err)
	}
	defer rows.Close()
	var out []Rollup
	for rows.Next() {
		r := Rollup{Host: host, Field: field, Resolution: res}
		var bucket, lastAt int64
		var sum float64
		if err := rows.Scan(&bucket, &r.Min, &r.Max, &sum, &r.Count, &r.Last, &lastAt); err != nil {
			return nil, err
		}
		r.Start, r.LastAt = time.Unix(bucket, 0).UTC(), fromMS(lastAt)
		if r.Count > 0 {
			r.Mean = sum / float64(r.Count)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// PruneRollups deletes rollups whose bucket started before now minus the
// retention of their resolution (0 means DefaultRetention).
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

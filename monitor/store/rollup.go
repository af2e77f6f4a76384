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
// small aggregate per field and minute between flushes, and the id of
// every field's series.
type Rollups struct {
	store *Store
	mu    sync.Mutex
	cur   map[bucketKey]*agg
	// series caches the series ids by host and field (used by Flush only).
	series map[seriesKey]int64
}

type seriesKey struct{ host, field string }

var _ monitor.SampleSink = (*Rollups)(nil)

// NewRollups makes an aggregator writing to s.
func (s *Store) NewRollups() *Rollups {
	return &Rollups{store: s, cur: map[bucketKey]*agg{}, series: map[seriesKey]int64{}}
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
INSERT INTO rollups (series, res, bucket, min, max, sum, count, last, last_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (series, res, bucket) DO UPDATE SET
	min = min(rollups.min, excluded.min),
	max = max(rollups.max, excluded.max),
	sum = rollups.sum + excluded.sum,
	count = rollups.count + excluded.count,
	last = CASE WHEN excluded.last_at >= rollups.last_at THEN excluded.last ELSE rollups.last END,
	last_at = max(rollups.last_at, excluded.last_at)`

// seriesID returns the id of a host's field series, creating it.
func seriesID(ctx context.Context, get, put *sql.Stmt, cache map[seriesKey]int64, k seriesKey) (int64, error) {
	if id, ok := cache[k]; ok {
		return id, nil
	}
	if _, err := put.ExecContext(ctx, k.host, k.field); err != nil {
		return 0, err
	}
	var id int64
	if err := get.QueryRowContext(ctx, k.host, k.field).Scan(&id); err != nil {
		return 0, err
	}
	cache[k] = id
	return id, nil
}

// Flush writes the minute aggregates gathered since the last flush in one
// transaction, and in the same transaction computes the hour rows of every
// hour that is over (a minute of a later hour has been seen) or that late
// samples touched. The hour in progress has minute rows only. On failure
// the aggregates are kept for the next flush. Flushes must not run
// concurrently with each other.
func (r *Rollups) Flush(ctx context.Context) error {
	r.mu.Lock()
	batch := r.cur
	r.cur = make(map[bucketKey]*agg, len(batch))
	r.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	created := map[seriesKey]bool{}
	err := r.store.tx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, upsertRollup)
		if err != nil {
			return err
		}
		defer stmt.Close()
		put, err := tx.PrepareContext(ctx, "INSERT INTO series (host, field) VALUES (?, ?) ON CONFLICT (host, field) DO NOTHING")
		if err != nil {
			return err
		}
		defer put.Close()
		get, err := tx.PrepareContext(ctx, "SELECT id FROM series WHERE host = ? AND field = ?")
		if err != nil {
			return err
		}
		defer get.Close()
		touched := map[int64]bool{} // hours with new minute rows
		var newest int64
		for k, a := range batch {
			sk := seriesKey{k.host, k.field}
			if _, cached := r.series[sk]; !cached {
				created[sk] = true
			}
			sid, err := seriesID(ctx, get, put, r.series, sk)
			if err != nil {
				return err
			}
			if _, err := stmt.ExecContext(ctx, sid, 60, k.minute, a.min, a.max, a.sum, a.count, a.last, a.lastAt); err != nil {
				return err
			}
			touched[k.minute-mod(k.minute, 3600)] = true
			newest = max(newest, k.minute)
		}
		return rollHours(ctx, tx, touched, newest-mod(newest, 3600))
	})
	if err != nil {
		for k := range created { // ids from a rolled-back transaction
			delete(r.series, k)
		}
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

// rollHourSQL computes the hour rows of one hour from its minute rows
// (replacing any earlier ones); last is the value of the newest minute.
const rollHourSQL = `
INSERT OR REPLACE INTO rollups (series, res, bucket, min, max, sum, count, last, last_at)
SELECT r.series, 3600, ?1, min(r.min), max(r.max), sum(r.sum), sum(r.count),
	(SELECT r2.last FROM rollups r2 WHERE r2.series = r.series AND r2.res = 60
		AND r2.bucket >= ?1 AND r2.bucket < ?1 + 3600 ORDER BY r2.last_at DESC LIMIT 1),
	max(r.last_at)
FROM rollups r WHERE r.res = 60 AND r.bucket >= ?1 AND r.bucket < ?1 + 3600
GROUP BY r.series`

// rollHours writes the hour rows of the touched hours that are over
// (before current), and of any hour that has minute rows but no hour rows
// yet before current (left by a crash or a quiet period).
func rollHours(ctx context.Context, tx *sql.Tx, touched map[int64]bool, current int64) error {
	var lastDone, newest sql.NullInt64
	if err := tx.QueryRowContext(ctx, "SELECT max(bucket) FROM rollups WHERE res = 3600").Scan(&lastDone); err != nil {
		return err
	}
	// The hour in progress is the newest minute's, in this batch or before.
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
	// Hours after the last hour row that have minute rows: normally none;
	// after a crash or a quiet period, a few (each found through the
	// (res, bucket) index).
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
		if _, err := tx.ExecContext(ctx, rollHourSQL, h); err != nil {
			return fmt.Errorf("hour %d: %w", h, err)
		}
	}
	return nil
}

// Rollups reads a field's rollups at a resolution (Minute or Hour) from a
// time on, oldest first.
func (s *Store) Rollups(ctx context.Context, host, field string, res time.Duration, since time.Time) ([]Rollup, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT r.bucket, r.min, r.max, r.sum, r.count, r.last, r.last_at
FROM rollups r JOIN series s ON s.id = r.series
WHERE s.host = ? AND s.field = ? AND r.res = ? AND r.bucket >= ? ORDER BY r.bucket`,
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

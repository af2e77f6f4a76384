package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"

	"github.com/mbvm/mb/monitor"
	"github.com/mbvm/mb/monitor/alert"
	"github.com/mbvm/mb/monitor/threshold"
)

// The Store is the engine's durable state.
var _ monitor.Store = (*Store)(nil)

type addressJSON struct {
	Address string `json:"address"`
	Since   int64  `json:"since"`
}

// SaveHost stores a host record.
func (s *Store) SaveHost(ctx context.Context, h monitor.HostRecord) error {
	return s.SaveHosts(ctx, []monitor.HostRecord{h})
}

// SaveHosts stores host records in one transaction.
func (s *Store) SaveHosts(ctx context.Context, hs []monitor.HostRecord) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `
INSERT INTO hosts (name, source, sources, addresses, first_seen, last_seen, reach, reach_since, reach_reason)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET source = excluded.source, sources = excluded.sources,
	addresses = excluded.addresses, first_seen = excluded.first_seen, last_seen = excluded.last_seen,
	reach = excluded.reach, reach_since = excluded.reach_since, reach_reason = excluded.reach_reason`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, h := range hs {
			sources, err := json.Marshal(nonNil(h.Sources))
			if err != nil {
				return err
			}
			addrs := make([]addressJSON, 0, len(h.Addresses))
			for _, a := range h.Addresses {
				addrs = append(addrs, addressJSON{a.Address, ms(a.Since)})
			}
			addrJSON, err := json.Marshal(addrs)
			if err != nil {
				return err
			}
			if _, err := stmt.ExecContext(ctx, h.Name, h.Source, string(sources), string(addrJSON), ms(h.FirstSeen), ms(h.LastSeen),
				string(h.Reach), ms(h.ReachSince), h.ReachReason); err != nil {
				return fmt.Errorf("save host %s: %w", h.Name, err)
			}
		}
		return nil
	})
}

// finite maps NaN and infinities (which SQLite would store as NULL) to 0.
func finite(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// DeleteHost removes a host and its alerts.
func (s *Store) DeleteHost(ctx context.Context, name string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, q := range []string{"DELETE FROM hosts WHERE name = ?", "DELETE FROM alerts WHERE host = ?", "DELETE FROM acks WHERE host = ?"} {
			if _, err := tx.ExecContext(ctx, q, name); err != nil {
				return fmt.Errorf("delete host %s: %w", name, err)
			}
		}
		return nil
	})
}

// SaveAlert stores an alert state and its acknowledgement (or its absence)
// in one transaction.
func (s *Store) SaveAlert(ctx context.Context, a alert.State) error {
	k := a.Key
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `
INSERT INTO alerts (host, plugin, field, level, streak, since, updated, value, text, notified, notified_at, alerted_at, peak, flapping, stale)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (host, plugin, field) DO UPDATE SET level = excluded.level, streak = excluded.streak,
	since = excluded.since, updated = excluded.updated, value = excluded.value, text = excluded.text,
	notified = excluded.notified, notified_at = excluded.notified_at, alerted_at = excluded.alerted_at,
	peak = excluded.peak, flapping = excluded.flapping, stale = excluded.stale`,
			k.Host, k.Plugin, k.Field, a.Level.String(), a.Streak, ms(a.Since), ms(a.Updated), finite(a.Value), a.Text,
			a.Notified.String(), ms(a.NotifiedAt), ms(a.AlertedAt), a.Peak.String(), a.Flapping, a.Stale)
		if err != nil {
			return fmt.Errorf("save alert %s: %w", k, err)
		}
		if a.Ack == nil {
			_, err = tx.ExecContext(ctx, "DELETE FROM acks WHERE host = ? AND plugin = ? AND field = ?", k.Host, k.Plugin, k.Field)
		} else {
			_, err = tx.ExecContext(ctx, `
INSERT INTO acks (host, plugin, field, by, comment, at, until) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (host, plugin, field) DO UPDATE SET by = excluded.by, comment = excluded.comment,
	at = excluded.at, until = excluded.until`,
				k.Host, k.Plugin, k.Field, a.Ack.By, a.Ack.Comment, ms(a.Ack.At), ms(a.Ack.Until))
		}
		if err != nil {
			return fmt.Errorf("save acknowledgement of %s: %w", k, err)
		}
		return nil
	})
}

// DeleteAlert removes an alert state and its acknowledgement.
func (s *Store) DeleteAlert(ctx context.Context, k alert.Key) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, q := range []string{
			"DELETE FROM alerts WHERE host = ? AND plugin = ? AND field = ?",
			"DELETE FROM acks WHERE host = ? AND plugin = ? AND field = ?",
		} {
			if _, err := tx.ExecContext(ctx, q, k.Host, k.Plugin, k.Field); err != nil {
				return fmt.Errorf("delete alert %s: %w", k, err)
			}
		}
		return nil
	})
}

// SaveSilence stores (or replaces) a silence.
func (s *Store) SaveSilence(ctx context.Context, x alert.Silence) error {
	_, err := s.db.ExecContext(ctx, `
INSERT INTO silences (id, host, plugin, field, start, "end", by, comment, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET host = excluded.host, plugin = excluded.plugin, field = excluded.field,
	start = excluded.start, "end" = excluded."end", by = excluded.by, comment = excluded.comment, created = excluded.created`,
		x.ID, x.Host, x.Plugin, x.Field, ms(x.Start), ms(x.End), x.By, x.Comment, ms(x.Created))
	if err != nil {
		return fmt.Errorf("save silence %s: %w", x.ID, err)
	}
	return nil
}

// DeleteSilence removes a silence (no error when it is already gone).
func (s *Store) DeleteSilence(ctx context.Context, id string) error {
	if _, err := s.db.ExecContext(ctx, "DELETE FROM silences WHERE id = ?", id); err != nil {
		return fmt.Errorf("delete silence %s: %w", id, err)
	}
	return nil
}

// Load reads everything the engine restores on start.
func (s *Store) Load(ctx context.Context) (monitor.Snapshot, error) {
	var snap monitor.Snapshot
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		if snap.Hosts, err = loadHosts(ctx, tx); err != nil {
			return err
		}
		if snap.Alerts, err = loadAlerts(ctx, tx); err != nil {
			return err
		}
		snap.Silences, err = loadSilences(ctx, tx)
		return err
	})
	return snap, err
}

func loadHosts(ctx context.Context, tx *sql.Tx) ([]monitor.HostRecord, error) {
	rows, err := tx.QueryContext(ctx, `SELECT name, source, sources, addresses, first_seen, last_seen, reach, reach_since, reach_reason FROM hosts ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("load hosts: %w", err)
	}
	defer rows.Close()
	var out []monitor.HostRecord
	for rows.Next() {
		var h monitor.HostRecord
		var sources, addrs, reach string
		var first, last, since int64
		if err := rows.Scan(&h.Name, &h.Source, &sources, &addrs, &first, &last, &reach, &since, &h.ReachReason); err != nil {
			return nil, fmt.Errorf("load hosts: %w", err)
		}
		if err := json.Unmarshal([]byte(sources), &h.Sources); err != nil {
			return nil, fmt.Errorf("load host %s: sources: %w", h.Name, err)
		}
		var as []addressJSON
		if err := json.Unmarshal([]byte(addrs), &as); err != nil {
			return nil, fmt.Errorf("load host %s: addresses: %w", h.Name, err)
		}
		for _, a := range as {
			h.Addresses = append(h.Addresses, monitor.AddressChange{Address: a.Address, Since: fromMS(a.Since)})
		}
		h.FirstSeen, h.LastSeen, h.Reach, h.ReachSince = fromMS(first), fromMS(last), monitor.Reachability(reach), fromMS(since)
		out = append(out, h)
	}
	return out, rows.Err()
}

func loadAlerts(ctx context.Context, tx *sql.Tx) ([]alert.State, error) {
	rows, err := tx.QueryContext(ctx, `
SELECT a.host, a.plugin, a.field, a.level, a.streak, a.since, a.updated, a.value, a.text, a.notified,
	a.notified_at, a.alerted_at, a.peak, a.flapping, a.stale,
	k.by, k.comment, k.at, k.until
FROM alerts a LEFT JOIN acks k ON k.host = a.host AND k.plugin = a.plugin AND k.field = a.field
ORDER BY a.host, a.plugin, a.field`)
	if err != nil {
		return nil, fmt.Errorf("load alerts: %w", err)
	}
	defer rows.Close()
	var out []alert.State
	for rows.Next() {
		var a alert.State
		var level, notified, peak string
		var since, updated, notifiedAt, alertedAt int64
		var by, comment sql.NullString
		var at, until sql.NullInt64
		if err := rows.Scan(&a.Key.Host, &a.Key.Plugin, &a.Key.Field, &level, &a.Streak, &since, &updated, &a.Value, &a.Text,
			&notified, &notifiedAt, &alertedAt, &peak, &a.Flapping, &a.Stale, &by, &comment, &at, &until); err != nil {
			return nil, fmt.Errorf("load alerts: %w", err)
		}
		for _, p := range []struct {
			dst *threshold.Level
			src string
		}{{&a.Level, level}, {&a.Notified, notified}, {&a.Peak, peak}} {
			l, err := threshold.ParseLevel(p.src)
			if err != nil {
				return nil, fmt.Errorf("load alert %s: %w", a.Key, err)
			}
			*p.dst = l
		}
		a.Since, a.Updated, a.NotifiedAt, a.AlertedAt = fromMS(since), fromMS(updated), fromMS(notifiedAt), fromMS(alertedAt)
		if at.Valid {
			a.Ack = &alert.Ack{By: by.String, Comment: comment.String, At: fromMS(at.Int64), Until: fromMS(until.Int64)}
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

func loadSilences(ctx context.Context, tx *sql.Tx) ([]alert.Silence, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id, host, plugin, field, start, "end", by, comment, created FROM silences ORDER BY start, id`)
	if err != nil {
		return nil, fmt.Errorf("load silences: %w", err)
	}
	defer rows.Close()
	var out []alert.Silence
	for rows.Next() {
		var x alert.Silence
		var start, end, created int64
		if err := rows.Scan(&x.ID, &x.Host, &x.Plugin, &x.Field, &start, &end, &x.By, &x.Comment, &created); err != nil {
			return nil, fmt.Errorf("load silences: %w", err)
		}
		x.Start, x.End, x.Created = fromMS(start), fromMS(end), fromMS(created)
		out = append(out, x)
	}
	return out, rows.Err()
}

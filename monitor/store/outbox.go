package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mbvm/mb/monitor"
	"github.com/mbvm/mb/monitor/alert"
)

// Outbox statuses.
const (
	StatusPending = "pending"
	StatusSent    = "sent"
	StatusFailed  = "failed"
)

// OutboxItem is one notification for one channel.
type OutboxItem struct {
	// ID is the row's id, for MarkSent and MarkFailed.
	ID int64
	// NotificationID and Channel identify it (unique together).
	NotificationID, Channel string
	// Payload is the stored message; Notification is it decoded as a
	// monitor.Notification (as far as it decodes: other pipelines' JSON
	// fills what matches).
	Payload      []byte
	Notification monitor.Notification
	// Created is when it was enqueued; Attempts how often sending failed;
	// NextAttempt when it is due again.
	Created     time.Time
	Attempts    int
	NextAttempt time.Time
	// Status is pending, sent or failed; LastError the last failure; Done
	// when it was sent or given up.
	Status    string
	LastError string
	Done      time.Time
}

// Backoff is the retry policy of the outbox.
type Backoff struct {
	// Initial is the delay after the first failure, doubled after each
	// further one up to Max.
	Initial, Max time.Duration
	// GiveUpAfter is how long after enqueueing a failing notification is
	// dropped (marked failed).
	GiveUpAfter time.Duration
}

// DefaultBackoff retries after 10 s, doubling up to 10 min, and gives up
// after 24 h.
var DefaultBackoff = Backoff{Initial: 10 * time.Second, Max: 10 * time.Minute, GiveUpAfter: 24 * time.Hour}

// Delay is the wait after the given number of failed attempts (1 or more).
func (b Backoff) Delay(attempts int) time.Duration {
	d := b.Initial
	if d <= 0 {
		d = DefaultBackoff.Initial
	}
	ceiling := b.Max
	if ceiling <= 0 {
		ceiling = DefaultBackoff.Max
	}
	for i := 1; i < attempts && d < ceiling; i++ {
		d *= 2
	}
	if d > ceiling {
		d = ceiling
	}
	return d
}

// Entry is an outbox row as the notification pipeline sees it: an opaque
// payload with the fields the store indexes.
type Entry struct {
	// NotificationID and Channel identify the row (unique together).
	NotificationID, Channel string
	// Key is the alert it is about; Level its level; Recovery marks a
	// recovery (SentChannels leaves those out).
	Key      alert.Key
	Level    string
	Recovery bool
	// Payload is the message, as the pipeline encodes it.
	Payload []byte
}

// Enqueue writes a notification for a channel to the outbox, due now, with
// the notification as JSON for its payload. See EnqueueEntry.
func (s *Store) Enqueue(ctx context.Context, n monitor.Notification, channel string, now time.Time) (int64, error) {
	payload, err := json.Marshal(n)
	if err != nil {
		return 0, fmt.Errorf("outbox: encode notification %s: %w", n.ID, err)
	}
	return s.EnqueueEntry(ctx, Entry{
		NotificationID: n.ID, Channel: channel,
		Key:   alert.Key{Host: n.Host, Plugin: n.Plugin, Field: n.Field},
		Level: n.Level, Recovery: n.Recovery, Payload: payload,
	}, now)
}

// EnqueueEntry writes an entry to the outbox, due now. It is durable when
// it returns. Enqueueing the same notification ID for the same channel
// again does nothing (and returns the existing row's id).
func (s *Store) EnqueueEntry(ctx context.Context, e Entry, now time.Time) (int64, error) {
	var id int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `
INSERT INTO outbox (notification_id, channel, host, plugin, field, level, recovery, payload, created, next_attempt)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (notification_id, channel) DO NOTHING`,
			e.NotificationID, e.Channel, e.Key.Host, e.Key.Plugin, e.Key.Field, e.Level, e.Recovery, e.Payload, ms(now), ms(now))
		if err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, "SELECT id FROM outbox WHERE notification_id = ? AND channel = ?", e.NotificationID, e.Channel).Scan(&id)
	})
	if err != nil {
		return 0, fmt.Errorf("outbox: enqueue %s for %s: %w", e.NotificationID, e.Channel, err)
	}
	return id, nil
}

// ItemID finds the row id of a notification's entry for a channel.
func (s *Store) ItemID(ctx context.Context, notificationID, channel string) (int64, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, "SELECT id FROM outbox WHERE notification_id = ? AND channel = ?", notificationID, channel).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("outbox item %s for %s: %w", notificationID, channel, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("outbox: %w", err)
	}
	return id, nil
}

const outboxCols = `id, notification_id, channel, payload, created, attempts, next_attempt, status, last_error, done_at`

func scanItems(rows *sql.Rows) ([]OutboxItem, error) {
	defer rows.Close()
	var out []OutboxItem
	for rows.Next() {
		var it OutboxItem
		var payload []byte
		var created, next, done int64
		if err := rows.Scan(&it.ID, &it.NotificationID, &it.Channel, &payload, &created, &it.Attempts, &next, &it.Status, &it.LastError, &done); err != nil {
			return nil, err
		}
		it.Payload = payload
		_ = json.Unmarshal(payload, &it.Notification) // best effort; Payload is the truth
		it.Created, it.NextAttempt, it.Done = fromMS(created), fromMS(next), fromMS(done)
		out = append(out, it)
	}
	return out, rows.Err()
}

// Due lists pending items due at now, oldest first, at most limit (0: 100).
func (s *Store) Due(ctx context.Context, now time.Time, limit int) ([]OutboxItem, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.db.QueryContext(ctx, "SELECT "+outboxCols+" FROM outbox WHERE status = ? AND next_attempt <= ? ORDER BY id LIMIT ?",
		StatusPending, ms(now), limit)
	if err != nil {
		return nil, fmt.Errorf("outbox: due: %w", err)
	}
	items, err := scanItems(rows)
	if err != nil {
		return nil, fmt.Errorf("outbox: due: %w", err)
	}
	return items, nil
}

// NextDue returns when the earliest pending item is due (false when none is).
func (s *Store) NextDue(ctx context.Context) (time.Time, bool, error) {
	var next sql.NullInt64
	if err := s.db.QueryRowContext(ctx, "SELECT MIN(next_attempt) FROM outbox WHERE status = ?", StatusPending).Scan(&next); err != nil {
		return time.Time{}, false, fmt.Errorf("outbox: next due: %w", err)
	}
	if !next.Valid {
		return time.Time{}, false, nil
	}
	return fromMS(next.Int64), true, nil
}

// Outbox lists items with a status ("" for all), newest first, at most
// limit (0: 100).
func (s *Store) Outbox(ctx context.Context, status string, limit int) ([]OutboxItem, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.db.QueryContext(ctx, "SELECT "+outboxCols+" FROM outbox WHERE ? = '' OR status = ? ORDER BY id DESC LIMIT ?",
		status, status, limit)
	if err != nil {
		return nil, fmt.Errorf("outbox: list: %w", err)
	}
	items, err := scanItems(rows)
	if err != nil {
		return nil, fmt.Errorf("outbox: list: %w", err)
	}
	return items, nil
}

// MarkSent records a successful delivery.
func (s *Store) MarkSent(ctx context.Context, id int64, now time.Time) error {
	return s.mark(ctx, "UPDATE outbox SET status = ?, done_at = ?, last_error = '' WHERE id = ? AND status = ?",
		id, StatusSent, ms(now), id, StatusPending)
}

// MarkFailed records a failed attempt: the item is due again after the
// backoff delay, or, once GiveUpAfter has passed since it was enqueued (or
// when permanent is set), marked failed for good. It reports whether the
// item was given up.
func (s *Store) MarkFailed(ctx context.Context, id int64, now time.Time, cause string, permanent bool, b Backoff) (bool, error) {
	giveUp := b.GiveUpAfter
	if giveUp <= 0 {
		giveUp = DefaultBackoff.GiveUpAfter
	}
	var gaveUp bool
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var attempts int
		var created int64
		var status string
		err := tx.QueryRowContext(ctx, "SELECT attempts, created, status FROM outbox WHERE id = ?", id).Scan(&attempts, &created, &status)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("outbox item %d: %w", id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if status != StatusPending {
			return fmt.Errorf("outbox item %d is %s, not pending", id, status)
		}
		attempts++
		next := now.Add(b.Delay(attempts))
		gaveUp = permanent || !next.Before(fromMS(created).Add(giveUp))
		if gaveUp {
			_, err = tx.ExecContext(ctx, "UPDATE outbox SET attempts = ?, status = ?, last_error = ?, done_at = ? WHERE id = ?",
				attempts, StatusFailed, cause, ms(now), id)
		} else {
			_, err = tx.ExecContext(ctx, "UPDATE outbox SET attempts = ?, last_error = ?, next_attempt = ? WHERE id = ?",
				attempts, cause, ms(next), id)
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("outbox: mark %d failed: %w", id, err)
	}
	return gaveUp, nil
}

// Reschedule records a failed attempt whose retry the caller timed:
// Attempts+1, the error kept, due again at next.
func (s *Store) Reschedule(ctx context.Context, id int64, next time.Time, cause string) error {
	return s.mark(ctx, "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt = ? WHERE id = ? AND status = ?",
		id, cause, ms(next), id, StatusPending)
}

// GiveUp marks a pending item failed for good, keeping the error.
func (s *Store) GiveUp(ctx context.Context, id int64, now time.Time, cause string) error {
	return s.mark(ctx, "UPDATE outbox SET attempts = attempts + 1, status = ?, last_error = ?, done_at = ? WHERE id = ? AND status = ?",
		id, StatusFailed, cause, ms(now), id, StatusPending)
}

func (s *Store) mark(ctx context.Context, q string, id int64, args ...any) error {
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("outbox: mark %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("outbox item %d: %w (or not pending)", id, ErrNotFound)
	}
	return nil
}

// SentChannels lists the channels that delivered a non-recovery
// notification for an alert since a time: where its recovery must go.
func (s *Store) SentChannels(ctx context.Context, k alert.Key, since time.Time) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT channel FROM outbox
WHERE host = ? AND plugin = ? AND field = ? AND recovery = 0 AND status = ? AND created >= ? ORDER BY channel`,
		k.Host, k.Plugin, k.Field, StatusSent, ms(since))
	if err != nil {
		return nil, fmt.Errorf("outbox: sent channels of %s: %w", k, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// AddAlertChannels records that the alert k went to channels (so that its
// recovery goes to them; notify.AlertLog's Alerted).
func (s *Store) AddAlertChannels(ctx context.Context, k alert.Key, channels []string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, c := range channels {
			if _, err := tx.ExecContext(ctx, `INSERT INTO alert_channels (host, plugin, field, channel) VALUES (?, ?, ?, ?)
ON CONFLICT DO NOTHING`, k.Host, k.Plugin, k.Field, c); err != nil {
				return fmt.Errorf("alert channels of %s: %w", k, err)
			}
		}
		return nil
	})
}

// TakeAlertChannels returns the channels the alert k went to, sorted, and
// forgets them (at its recovery; notify.AlertLog's Recovered).
func (s *Store) TakeAlertChannels(ctx context.Context, k alert.Key) ([]string, error) {
	var out []string
	err := s.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, "SELECT channel FROM alert_channels WHERE host = ? AND plugin = ? AND field = ? ORDER BY channel",
			k.Host, k.Plugin, k.Field)
		if err != nil {
			return err
		}
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				rows.Close()
				return err
			}
			out = append(out, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "DELETE FROM alert_channels WHERE host = ? AND plugin = ? AND field = ?", k.Host, k.Plugin, k.Field)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("alert channels of %s: %w", k, err)
	}
	return out, nil
}

// PruneOutbox deletes sent and failed items finished before a time.
func (s *Store) PruneOutbox(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, "DELETE FROM outbox WHERE status != ? AND done_at < ?", StatusPending, ms(before))
	if err != nil {
		return 0, fmt.Errorf("outbox: prune: %w", err)
	}
	return res.RowsAffected()
}

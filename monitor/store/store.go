// Package store keeps the monitor's durable state in SQLite (through the
// pure-Go driver modernc.org/sqlite, so no cgo): hosts, alert states,
// acknowledgements, silences, the notification outbox and per-minute and
// per-hour rollups of every numeric field.
//
// The database runs in WAL mode with synchronous=FULL: a write that
// returned survives a kill -9 of the process. The schema is versioned with
// PRAGMA user_version and migrated forward on Open. A user can read it with
// the sqlite3 tool.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// Store is an open monitor database. It is safe for concurrent use.
type Store struct {
	db   *sql.DB
	path string
}

// migration is one schema step: SQL, then an optional Go step in the same
// transaction.
type migration struct {
	sql string
	fn  func(ctx context.Context, tx *sql.Tx) error
}

// migrations are the schema steps; step i moves user_version from i to
// i+1. Append only: never change a step that has shipped.
var migrations = []migration{
	// 1: the first schema.
	{sql: `
CREATE TABLE hosts (
	name         TEXT PRIMARY KEY,
	source       TEXT NOT NULL DEFAULT '',
	sources      TEXT NOT NULL DEFAULT '[]',  -- JSON list
	addresses    TEXT NOT NULL DEFAULT '[]',  -- JSON list of {address, since}
	first_seen   INTEGER NOT NULL DEFAULT 0,  -- Unix milliseconds; 0 = never
	last_seen    INTEGER NOT NULL DEFAULT 0,
	reach        TEXT NOT NULL DEFAULT 'unknown',
	reach_since  INTEGER NOT NULL DEFAULT 0,
	reach_reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE alerts (
	host        TEXT NOT NULL,
	plugin      TEXT NOT NULL,
	field       TEXT NOT NULL,
	level       TEXT NOT NULL,
	streak      INTEGER NOT NULL DEFAULT 0,
	since       INTEGER NOT NULL DEFAULT 0,
	updated     INTEGER NOT NULL DEFAULT 0,
	value       REAL NOT NULL DEFAULT 0,
	text        TEXT NOT NULL DEFAULT '',
	notified    TEXT NOT NULL DEFAULT 'OK',
	notified_at INTEGER NOT NULL DEFAULT 0,
	alerted_at  INTEGER NOT NULL DEFAULT 0,
	peak        TEXT NOT NULL DEFAULT 'OK',
	flapping    INTEGER NOT NULL DEFAULT 0,
	stale       INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (host, plugin, field)
);
CREATE TABLE acks (
	host    TEXT NOT NULL,
	plugin  TEXT NOT NULL,
	field   TEXT NOT NULL,
	by      TEXT NOT NULL DEFAULT '',
	comment TEXT NOT NULL DEFAULT '',
	at      INTEGER NOT NULL,
	until   INTEGER NOT NULL DEFAULT 0,      -- 0 = until the alert recovers
	PRIMARY KEY (host, plugin, field)
);
CREATE TABLE silences (
	id      TEXT PRIMARY KEY,
	host    TEXT NOT NULL DEFAULT '',
	plugin  TEXT NOT NULL DEFAULT '',
	field   TEXT NOT NULL DEFAULT '',
	start   INTEGER NOT NULL,
	"end"   INTEGER NOT NULL,
	by      TEXT NOT NULL DEFAULT '',
	comment TEXT NOT NULL DEFAULT '',
	created INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE outbox (
	id              INTEGER PRIMARY KEY AUTOINCREMENT,
	notification_id TEXT NOT NULL,
	channel         TEXT NOT NULL,
	host            TEXT NOT NULL DEFAULT '',
	plugin          TEXT NOT NULL DEFAULT '',
	field           TEXT NOT NULL DEFAULT '',
	level           TEXT NOT NULL DEFAULT '',
	recovery        INTEGER NOT NULL DEFAULT 0,
	payload         BLOB NOT NULL,
	created         INTEGER NOT NULL,
	attempts        INTEGER NOT NULL DEFAULT 0,
	next_attempt    INTEGER NOT NULL,
	status          TEXT NOT NULL DEFAULT 'pending', -- pending, sent, failed
	last_error      TEXT NOT NULL DEFAULT '',
	done_at         INTEGER NOT NULL DEFAULT 0,
	UNIQUE (notification_id, channel)
);
CREATE INDEX outbox_due ON outbox (status, next_attempt);
CREATE INDEX outbox_key ON outbox (host, plugin, field, status);
CREATE TABLE rollups (
	host    TEXT NOT NULL,
	field   TEXT NOT NULL,
	res     INTEGER NOT NULL,  -- bucket length in seconds: 60 or 3600
	bucket  INTEGER NOT NULL,  -- bucket start, Unix seconds
	min     REAL NOT NULL,
	max     REAL NOT NULL,
	sum     REAL NOT NULL,
	count   INTEGER NOT NULL,
	last    REAL NOT NULL,
	last_at INTEGER NOT NULL,  -- Unix milliseconds of last
	PRIMARY KEY (host, field, res, bucket)
) WITHOUT ROWID;
CREATE INDEX rollups_age ON rollups (res, bucket);
`},
	// 2: rollups refer to a series (host, field) by id: rows of about 80
	// bytes instead of 145 (existing rows are carried over); the channels
	// each ongoing alert went to, for its recovery.
	{sql: `
CREATE TABLE alert_channels (
	host    TEXT NOT NULL,
	plugin  TEXT NOT NULL,
	field   TEXT NOT NULL,
	channel TEXT NOT NULL,
	PRIMARY KEY (host, plugin, field, channel)
) WITHOUT ROWID;
CREATE TABLE series (
	id    INTEGER PRIMARY KEY,
	host  TEXT NOT NULL,
	field TEXT NOT NULL,     -- plugin.path, or rtt
	UNIQUE (host, field)
);
INSERT INTO series (host, field) SELECT DISTINCT host, field FROM rollups ORDER BY host, field;
ALTER TABLE rollups RENAME TO rollups_v1;
DROP INDEX rollups_age;
CREATE TABLE rollups (
	series  INTEGER NOT NULL REFERENCES series (id) ON DELETE CASCADE,
	res     INTEGER NOT NULL,  -- bucket length in seconds: 60 or 3600
	bucket  INTEGER NOT NULL,  -- bucket start, Unix seconds
	min     REAL NOT NULL,
	max     REAL NOT NULL,
	sum     REAL NOT NULL,
	count   INTEGER NOT NULL,
	last    REAL NOT NULL,
	last_at INTEGER NOT NULL,  -- Unix milliseconds of last
	PRIMARY KEY (series, res, bucket)
) WITHOUT ROWID;
INSERT INTO rollups (series, res, bucket, min, max, sum, count, last, last_at)
	SELECT s.id, r.res, r.bucket, r.min, r.max, r.sum, r.count, r.last, r.last_at
	FROM rollups_v1 r JOIN series s ON s.host = r.host AND s.field = r.field;
DROP TABLE rollups_v1;
CREATE INDEX rollups_age ON rollups (res, bucket);
`},
	// 3: one rollup row per host and bucket, holding all its fields in a
	// blob (rowcodec.go): 10,000 hosts write 10,000 rows a minute instead
	// of 370,000, and a field takes about 20 bytes a minute instead of 80.
	// Rows are keyed by time first, so writes append and pruning cuts the
	// front. Existing rollups are carried over.
	{sql: `
CREATE TABLE rollup_hosts (
	id   INTEGER PRIMARY KEY,
	name TEXT NOT NULL UNIQUE
);
CREATE TABLE rollup_fields (
	id   INTEGER PRIMARY KEY,
	name TEXT NOT NULL UNIQUE   -- plugin.path, or rtt
);
CREATE TABLE rollups_v3 (
	res    INTEGER NOT NULL,  -- bucket length in seconds: 60 or 3600
	bucket INTEGER NOT NULL,  -- bucket start, Unix seconds
	host   INTEGER NOT NULL,  -- rollup_hosts.id
	data   BLOB NOT NULL,     -- every field's min, max, mean, count, last
	PRIMARY KEY (res, bucket, host)
) WITHOUT ROWID;
`, fn: migrateRollupsV3},
}

// SchemaVersion is the schema version this code writes.
func SchemaVersion() int { return len(migrations) }

// Open opens (creating it 0600, in a 0700 directory) the database at path
// and migrates its schema forward.
func Open(ctx context.Context, path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("monitor store: %w", err)
	}
	// Create the file ourselves so it (and the -wal and -shm files SQLite
	// makes with the same mode) is private, and refuse a symlink.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("monitor store: open %s: %w", path, err)
	}
	f.Close()
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(ON)")
	q.Add("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("monitor store: %w", err)
	}
	// One connection: SQLite allows one writer at a time anyway, and it
	// keeps every pragma on the one connection in use.
	db.SetMaxOpenConns(1)
	s := &Store{db: db, path: path}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// DB returns the underlying database, for tests and tools.
func (s *Store) DB() *sql.DB { return s.db }

func (s *Store) migrate(ctx context.Context) error {
	var mode string
	if err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("monitor store %s: %w", s.path, err)
	}
	if mode != "wal" {
		return fmt.Errorf("monitor store %s: journal mode is %q, not wal (is the file on a filesystem without shared memory?)", s.path, mode)
	}
	var v int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("monitor store %s: %w", s.path, err)
	}
	if v > len(migrations) {
		return fmt.Errorf("monitor store %s: schema version %d is newer than this mb understands (%d); use a newer mb", s.path, v, len(migrations))
	}
	for ; v < len(migrations); v++ {
		err := s.tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, migrations[v].sql); err != nil {
				return err
			}
			if fn := migrations[v].fn; fn != nil {
				if err := fn(ctx, tx); err != nil {
					return err
				}
			}
			_, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1))
			return err
		})
		if err != nil {
			return fmt.Errorf("monitor store %s: migrate to schema %d: %w", s.path, v+1, err)
		}
	}
	return nil
}

// tx runs fn in a transaction, committing when it returns nil.
func (s *Store) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// ms converts a time to Unix milliseconds (0 for the zero time).
func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromMS converts Unix milliseconds back (0 is the zero time).
func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// ErrNotFound is returned for a missing row.
var ErrNotFound = errors.New("not found")

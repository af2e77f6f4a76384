package service

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mbvm/mb/monitor/journal"
)

// MessagesKept is how many recent journal messages the API's messages
// endpoint shows (hbd's last 30).
const MessagesKept = 30

// recorder is the engine's Journal: it writes to the journal file (when
// the journal is enabled) and keeps the newest messages for the API.
type recorder struct {
	w   *journal.Writer // nil: journal_enabled is false
	log *slog.Logger

	mu   sync.Mutex
	ring []journal.Entry // the newest MessagesKept, oldest first

	writeErrors atomic.Uint64
	tap         func(journal.Entry) // sees every message (the live feed)
}

// setTap gives every later message to fn as well.
func (r *recorder) setTap(fn func(journal.Entry)) {
	r.mu.Lock()
	r.tap = fn
	r.mu.Unlock()
}

func newRecorder(w *journal.Writer, log *slog.Logger) *recorder {
	r := &recorder{w: w, log: log}
	if w != nil {
		if tail, err := w.Tail(MessagesKept); err == nil {
			r.ring = tail
		}
	}
	return r
}

// Record implements monitor.Journal.
func (r *recorder) Record(t time.Time, source string, message any) error {
	e := journal.NewEntry(t, source, message)
	r.mu.Lock()
	if len(r.ring) >= MessagesKept {
		copy(r.ring, r.ring[1:])
		r.ring = r.ring[:MessagesKept-1]
	}
	r.ring = append(r.ring, e)
	tap := r.tap
	r.mu.Unlock()
	if tap != nil {
		tap(e)
	}
	if r.w == nil {
		return nil
	}
	write := r.w.Write
	if m, ok := message.(map[string]any); ok && (m["ID"] == "PLG" || m["ID"] == "HTB") {
		// Observations, thousands a second with many hosts, are written
		// in batches, at most a second late (Run flushes); everything else
		// at once.
		write = r.w.WriteLater
	}
	if err := write(e); err != nil {
		r.writeErrors.Add(1)
		return err
	}
	return nil
}

// flush writes the observations held back.
func (r *recorder) flush() {
	if r.w == nil {
		return
	}
	if err := r.w.Flush(); err != nil {
		r.writeErrors.Add(1)
		r.log.Error("monitor: journal", "err", err)
	}
}

// recent returns the newest messages, oldest first.
func (r *recorder) recent() []journal.Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]journal.Entry(nil), r.ring...)
}

// Close closes the journal file.
func (r *recorder) Close() error {
	if r.w == nil {
		return nil
	}
	return r.w.Close()
}

// Note records a message from outside the engine (a VM's lifecycle, a
// guest program's mb.event) in the journal and in the API's recent
// messages. source names where it came from ("" for none).
func (s *Service) Note(t time.Time, source string, message any) error {
	return s.journal.Record(t, source, message)
}

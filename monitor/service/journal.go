package service

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mbvm/mb/monitor"
	"github.com/mbvm/mb/monitor/journal"
)

// MessagesKept is how many recent journal messages the API's messages
// endpoint shows (hbd's last 30).
const MessagesKept = 30

// recorder is the engine's Journal: it writes to the journal file (when
// the journal is enabled), keeps the newest messages for the API, and
// counts what comes in for /metrics.
type recorder struct {
	w   *journal.Writer // nil: journal_enabled is false
	log *slog.Logger

	mu   sync.Mutex
	ring []journal.Entry // the newest MessagesKept, oldest first

	heartbeats, pluginReports, samples, transitions, notifications, deliveries, writeErrors atomic.Uint64
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
	if m, ok := message.(map[string]any); ok {
		switch m["ID"] {
		case "HTB":
			r.heartbeats.Add(1)
		case "PLG":
			r.pluginReports.Add(1)
		case "ALERT":
			r.transitions.Add(1)
		case "NOTIFY":
			r.notifications.Add(1)
		case "DELIVERY":
			r.deliveries.Add(1)
		}
	}
	e := journal.NewEntry(t, source, message)
	r.mu.Lock()
	if len(r.ring) >= MessagesKept {
		copy(r.ring, r.ring[1:])
		r.ring = r.ring[:MessagesKept-1]
	}
	r.ring = append(r.ring, e)
	r.mu.Unlock()
	if r.w == nil {
		return nil
	}
	if err := r.w.Write(e); err != nil {
		r.writeErrors.Add(1)
		return err
	}
	return nil
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

// counting wraps the rollup sink so that samples are counted.
func (r *recorder) counting(next monitor.SampleSink) monitor.SampleSink {
	return sampleCounter{next: next, n: &r.samples}
}

type sampleCounter struct {
	next monitor.SampleSink
	n    *atomic.Uint64
}

func (c sampleCounter) AddSample(host, field string, t time.Time, v float64) {
	c.n.Add(1)
	c.next.AddSample(host, field, t, v)
}

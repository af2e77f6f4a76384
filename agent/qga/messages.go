package qga

import (
	"context"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/mbvm/mb/agent/qgaproto"
	"github.com/mbvm/mb/internal/safetext"
)

// GuestMessage is a message from a guest program (mb.event, mb.metric,
// mb.ready) as the host keeps it: renumbered by the host, timestamped
// when collected, and cleaned. Its fields are those of vmhost.GuestMessage.
type GuestMessage struct {
	Seq    uint64
	Time   time.Time
	Kind   string
	Level  string
	Text   string
	Plugin string
	Fields map[string]float64
	Name   string
	Detail string
}

// How the Watcher bounds what a guest sends: it keeps the last
// inboxLen messages, and accepts at most msgRate per second with bursts of
// msgBurst; the rest is dropped and counted.
const (
	inboxLen = 1000
	msgRate  = 20.0
	msgBurst = 200.0
	// collectRounds bounds the mb-get-messages calls of one ping.
	collectRounds = 4
	// fastInterval is the ping interval while someone waits for the
	// guest (PollSoon).
	fastInterval = 250 * time.Millisecond
	// fastFor is how long one PollSoon keeps the fast interval.
	fastFor = 2 * time.Second
)

// levels are the event levels kept; another becomes "info".
var levels = map[string]bool{"debug": true, "info": true, "notice": true, "warning": true, "error": true, "critical": true}

// collectMessages drains the guest's message queue (mb-agent only).
func (w *Watcher) collectMessages(ctx context.Context) {
	for range collectRounds {
		w.mu.Lock()
		args := qgaproto.MessagesArgs{After: w.guestAfter, Instance: w.guestInstance}
		w.mu.Unlock()
		var m qgaproto.Messages
		if err := w.c.Call(ctx, qgaproto.MessagesCommand, args, &m); err != nil {
			w.log.Debug("collecting guest messages failed", "error", err)
			return
		}
		w.accept(&m)
		if !m.More {
			return
		}
	}
}

// accept cleans, rate-limits and keeps the messages of one reply.
func (w *Watcher) accept(m *qgaproto.Messages) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if m.Instance != w.guestInstance {
		w.guestInstance, w.guestAfter = m.Instance, 0
	}
	names := make([]string, 0, len(m.Ready))
	for _, r := range m.Ready {
		if len(names) == qgaproto.MaxReadiness {
			break
		}
		if n := safetext.Clean(r.Name, qgaproto.MaxNameLen); n != "" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	w.ready = slices.Compact(names)
	w.guestDropped = m.Dropped
	for _, gm := range m.Messages {
		if gm.Seq > w.guestAfter {
			w.guestAfter = gm.Seq
		}
		if !w.bucket.allow(now) {
			w.limited++
			continue
		}
		w.hostSeq++
		w.inbox = append(w.inbox, clean(gm, w.hostSeq, now))
	}
	if over := len(w.inbox) - inboxLen; over > 0 {
		w.inbox = append(w.inbox[:0], w.inbox[over:]...)
	}
}

// clean applies the limits a guest is not trusted to respect.
func clean(gm qgaproto.GuestMessage, seq uint64, now time.Time) GuestMessage {
	out := GuestMessage{
		Seq:    seq,
		Time:   now.UTC(),
		Kind:   safetext.Clean(gm.Kind, 16),
		Text:   safetext.Clean(gm.Text, qgaproto.MaxMessageText),
		Plugin: safetext.Clean(gm.Plugin, qgaproto.MaxNameLen),
		Name:   safetext.Clean(gm.Name, qgaproto.MaxNameLen),
		Detail: safetext.Clean(gm.Detail, qgaproto.MaxMessageText),
	}
	if gm.Kind == qgaproto.MessageEvent {
		out.Level = "info"
		if levels[gm.Level] {
			out.Level = gm.Level
		}
	}
	if len(gm.Fields) > 0 {
		out.Fields = map[string]float64{}
		for _, k := range slices.Sorted(maps.Keys(gm.Fields)) {
			if len(out.Fields) == qgaproto.MaxMetricFields {
				break
			}
			if n := safetext.Clean(k, qgaproto.MaxNameLen); n != "" {
				out.Fields[n] = gm.Fields[k]
			}
		}
	}
	return out
}

// Messages returns the collected messages numbered after after, oldest
// first, and the number of the last one collected (0 before any). Only the
// last 1,000 are kept.
func (w *Watcher) Messages(after uint64) ([]GuestMessage, uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	i := sort.Search(len(w.inbox), func(i int) bool { return w.inbox[i].Seq > after })
	return slices.Clone(w.inbox[i:]), w.hostSeq
}

// PollSoon makes the Watcher ping (and collect messages) at once and then
// every 250 ms for the next 2 s: for a caller waiting for the guest to
// report readiness. It never blocks.
func (w *Watcher) PollSoon() {
	w.mu.Lock()
	w.fastUntil = time.Now().Add(fastFor)
	w.mu.Unlock()
	select {
	case w.poke <- struct{}{}:
	default:
	}
}

// tokenBucket is the per-VM rate limit on guest messages: msgBurst tokens,
// refilled at msgRate per second, one per message.
type tokenBucket struct {
	tokens float64
	at     time.Time
}

// allow takes a token at time now, if there is one.
func (b *tokenBucket) allow(now time.Time) bool {
	if b.at.IsZero() {
		b.tokens = msgBurst
	} else if d := now.Sub(b.at).Seconds(); d > 0 {
		b.tokens = min(msgBurst, b.tokens+d*msgRate)
	}
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

package notify

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// ItemState is where an outbox item is in its life.
type ItemState string

// The states of an outbox item.
const (
	Pending ItemState = "pending" // waiting for its next attempt
	Sent    ItemState = "sent"    // delivered
	Failed  ItemState = "failed"  // given up on: permanent error, or older than the drop time
)

// Item is one notification for one channel in the outbox.
type Item struct {
	ID          string // ItemID(Message.ID, Channel)
	Channel     string
	Message     Message
	State       ItemState
	Enqueued    time.Time
	Attempts    int       // failed attempts so far
	NextAttempt time.Time // when it is due
	LastError   string    // the last failure, secrets already scrubbed by the channel
}

// ItemID is the outbox key of message id for channel.
func ItemID(messageID, channel string) string { return messageID + "/" + channel }

// Outbox is where a notification waits until it is delivered: it is
// written before the first attempt, so that a crash or restart loses
// nothing. The monitor's store implements it in SQLite; MemoryOutbox is
// the in-memory one. Implementations must be safe for concurrent use.
type Outbox interface {
	// Enqueue adds m for channel, due now. Enqueueing the same message ID
	// for the same channel again does nothing.
	Enqueue(ctx context.Context, m Message, channel string) error
	// Due returns up to limit pending items whose next attempt is at or
	// before now, oldest first.
	Due(ctx context.Context, now time.Time, limit int) ([]Item, error)
	// MarkSent records that the item was delivered.
	MarkSent(ctx context.Context, id string) error
	// Reschedule records a failed attempt (Attempts+1, LastError) and
	// makes the item due again at next.
	Reschedule(ctx context.Context, id string, next time.Time, lastErr string) error
	// MarkFailed gives up on the item, keeping lastErr for the API and
	// the journal.
	MarkFailed(ctx context.Context, id string, lastErr string) error
}

// MemoryOutbox is an Outbox in memory, for tests and for a monitor run
// without a store. It keeps every item, sent and failed ones included.
type MemoryOutbox struct {
	// Now is the clock used for Enqueued; nil means time.Now.
	Now func() time.Time

	mu    sync.Mutex
	items map[string]*Item
	seq   map[string]int // insertion order, for a stable oldest-first
	next  int
}

func (o *MemoryOutbox) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// Enqueue implements Outbox.
func (o *MemoryOutbox) Enqueue(_ context.Context, m Message, channel string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.items == nil {
		o.items, o.seq = map[string]*Item{}, map[string]int{}
	}
	id := ItemID(m.ID, channel)
	if _, ok := o.items[id]; ok {
		return nil
	}
	now := o.now()
	o.items[id] = &Item{ID: id, Channel: channel, Message: m, State: Pending, Enqueued: now, NextAttempt: now}
	o.seq[id] = o.next
	o.next++
	return nil
}

// Due implements Outbox.
func (o *MemoryOutbox) Due(_ context.Context, now time.Time, limit int) ([]Item, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []Item
	for _, it := range o.items {
		if it.State == Pending && !it.NextAttempt.After(now) {
			out = append(out, *it)
		}
	}
	sort.Slice(out, func(i, j int) bool { return o.seq[out[i].ID] < o.seq[out[j].ID] })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (o *MemoryOutbox) pending(id string) (*Item, error) {
	it, ok := o.items[id]
	if !ok {
		return nil, fmt.Errorf("outbox: no item %q", id)
	}
	if it.State != Pending {
		return nil, fmt.Errorf("outbox: item %q is already %s", id, it.State)
	}
	return it, nil
}

// MarkSent implements Outbox.
func (o *MemoryOutbox) MarkSent(_ context.Context, id string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	it, err := o.pending(id)
	if err != nil {
		return err
	}
	it.State = Sent
	return nil
}

// Reschedule implements Outbox.
func (o *MemoryOutbox) Reschedule(_ context.Context, id string, next time.Time, lastErr string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	it, err := o.pending(id)
	if err != nil {
		return err
	}
	it.Attempts++
	it.NextAttempt = next
	it.LastError = lastErr
	return nil
}

// MarkFailed implements Outbox.
func (o *MemoryOutbox) MarkFailed(_ context.Context, id string, lastErr string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	it, err := o.pending(id)
	if err != nil {
		return err
	}
	it.State = Failed
	it.LastError = lastErr
	return nil
}

// Items returns a copy of every item, oldest first.
func (o *MemoryOutbox) Items() []Item {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]Item, 0, len(o.items))
	for _, it := range o.items {
		out = append(out, *it)
	}
	sort.Slice(out, func(i, j int) bool { return o.seq[out[i].ID] < o.seq[out[j].ID] })
	return out
}

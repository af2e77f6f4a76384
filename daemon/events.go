package daemon

import (
	"sync"
	"time"

	"github.com/mbvm/mb/daemon/api"
)

// eventBus keeps the recent lifecycle events and fans new ones out to
// subscribers. A slow subscriber loses events rather than blocking the
// daemon; the events it missed stay in the history.
type eventBus struct {
	mu      sync.Mutex
	seq     int64
	history []api.Event
	keep    int
	subs    map[chan api.Event]struct{}
}

func newEventBus(keep int) *eventBus {
	return &eventBus{keep: keep, subs: map[chan api.Event]struct{}{}}
}

// publish records e (filling Seq and Time) and sends it to subscribers.
func (b *eventBus) publish(e api.Event) api.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	e.Seq = b.seq
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	b.history = append(b.history, e)
	if len(b.history) > b.keep {
		b.history = append([]api.Event(nil), b.history[len(b.history)-b.keep:]...)
	}
	for ch := range b.subs {
		select {
		case ch <- e:
		default:
		}
	}
	return e
}

// subscribe returns the history so far and a channel of the events after
// it; cancel releases the channel.
func (b *eventBus) subscribe() (past []api.Event, ch <-chan api.Event, cancel func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := make(chan api.Event, 256)
	b.subs[c] = struct{}{}
	past = append([]api.Event(nil), b.history...)
	return past, c, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(b.subs, c)
	}
}

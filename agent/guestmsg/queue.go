// Package guestmsg is the guest side of messages from guest programs to
// the host: the handlers mb-agent registers on its command socket (mb.ready,
// mb.event, mb.metric, mb.info, agent.ping) and the bounded queue the host
// drains with the mb-get-messages QGA extension on its liveness ping.
package guestmsg

import (
	"crypto/rand"
	"encoding/hex"
	"sort"
	"sync"
	"time"

	"github.com/mbvm/mb/agent/qgaproto"
)

// DefaultQueueLen is how many messages wait for the host at most.
const DefaultQueueLen = 1000

// Queue holds messages until the host acknowledges them. When full, the
// oldest message is dropped and counted. It is safe for concurrent use.
type Queue struct {
	mu      sync.Mutex
	max     int
	msgs    []qgaproto.GuestMessage
	seq     uint64
	dropped uint64
	ready   map[string]qgaproto.Readiness
	// lastCollect is when the host last asked; zero before.
	lastCollect time.Time
	instance    string
	now         func() time.Time
}

// NewQueue returns a queue of at most max messages (DefaultQueueLen when
// max <= 0).
func NewQueue(max int) *Queue {
	if max <= 0 {
		max = DefaultQueueLen
	}
	var id [8]byte
	rand.Read(id[:])
	return &Queue{max: max, ready: map[string]qgaproto.Readiness{}, now: time.Now, instance: hex.EncodeToString(id[:])}
}

// Push queues m, numbering and timestamping it, and returns its sequence
// number. A readiness message also records the readiness (see Ready).
func (q *Queue) Push(m qgaproto.GuestMessage) uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.seq++
	m.Seq = q.seq
	m.TimeNs = q.now().UnixNano()
	if m.Kind == qgaproto.MessageReady {
		if _, ok := q.ready[m.Name]; ok || len(q.ready) < qgaproto.MaxReadiness {
			q.ready[m.Name] = qgaproto.Readiness{Name: m.Name, Detail: m.Detail, TimeNs: m.TimeNs}
		}
	}
	if len(q.msgs) >= q.max {
		n := len(q.msgs) - q.max + 1
		q.dropped += uint64(n)
		q.msgs = append(q.msgs[:0], q.msgs[n:]...)
	}
	q.msgs = append(q.msgs, m)
	return m.Seq
}

// Collect forgets the messages up to a.After (the host has them) and
// returns the next ones, with the readiness list and the drop count. An
// After from another instance of the agent acknowledges nothing.
func (q *Queue) Collect(a qgaproto.MessagesArgs) qgaproto.Messages {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.lastCollect = q.now()
	after := a.After
	if a.Instance != q.instance {
		after = 0
	}
	i := sort.Search(len(q.msgs), func(i int) bool { return q.msgs[i].Seq > after })
	if i > 0 {
		q.msgs = append(q.msgs[:0], q.msgs[i:]...)
	}
	n := min(len(q.msgs), qgaproto.MaxMessagesPerCall)
	out := qgaproto.Messages{
		Instance: q.instance,
		Messages: append([]qgaproto.GuestMessage{}, q.msgs[:n]...),
		Dropped:  q.dropped,
		More:     len(q.msgs) > n,
		Ready:    q.readyLocked(),
	}
	return out
}

// Ready returns the readiness reported so far, by name.
func (q *Queue) Ready() []qgaproto.Readiness {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.readyLocked()
}

func (q *Queue) readyLocked() []qgaproto.Readiness {
	out := make([]qgaproto.Readiness, 0, len(q.ready))
	for _, r := range q.ready {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Stats is what mb.info reports of the queue.
type Stats struct {
	Queued      int
	Dropped     uint64
	LastCollect time.Time
}

// Stats returns the queue's length, drop count and last collection.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return Stats{Queued: len(q.msgs), Dropped: q.dropped, LastCollect: q.lastCollect}
}

package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"
)

// Defaults of DispatcherConfig.
const (
	// DefaultDropAfter is how long a notification is retried before it is
	// given up on and marked failed: 24 hours from when it was queued.
	DefaultDropAfter = 24 * time.Hour
	// DefaultSendTimeout bounds one attempt at one channel.
	DefaultSendTimeout = 30 * time.Second
	// DefaultConcurrency is how many sends may be in flight at once.
	DefaultConcurrency = 8
	// DefaultPoll is how often the outbox is checked for due items when
	// nothing kicks the dispatcher.
	DefaultPoll = time.Second
)

// Backoff is the delay between attempts: Initial after the first failure,
// multiplied by Factor after each further one, at most Max, each shortened
// by a random fraction of up to Jitter so that retries spread out.
type Backoff struct {
	Initial time.Duration // default 5 s
	Max     time.Duration // default 10 min
	Factor  float64       // default 2
	Jitter  float64       // 0..1, default 0.2
}

// Delay is the wait after the given number of failed attempts (1 for the
// first failure). r is a number in [0, 1) picking the jitter.
func (b Backoff) Delay(attempts int, r float64) time.Duration {
	b = b.withDefaults()
	d := float64(b.Initial)
	for i := 1; i < attempts && d < float64(b.Max); i++ {
		d *= b.Factor
	}
	d = min(d, float64(b.Max))
	return time.Duration(d * (1 - b.Jitter*r))
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = 5 * time.Second
	}
	if b.Max <= 0 {
		b.Max = 10 * time.Minute
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	if b.Factor < 1 {
		b.Factor = 2
	}
	if b.Jitter < 0 || b.Jitter > 1 {
		b.Jitter = 0.2
	}
	return b
}

// Outcome is what happened to one attempt.
type Outcome string

// The outcomes the dispatcher counts and reports.
const (
	OutcomeSent    Outcome = "sent"    // delivered
	OutcomeRetried Outcome = "retried" // failed, will be tried again
	OutcomeFailed  Outcome = "failed"  // given up on
)

// Counts are a channel's outcome counters since the dispatcher started.
type Counts struct {
	Sent, Retried, Failed uint64
}

// DispatcherConfig configures a Dispatcher. Zero fields take the defaults.
type DispatcherConfig struct {
	Outbox      Outbox
	Channels    map[string]Configured
	Logger      *slog.Logger
	Concurrency int
	SendTimeout time.Duration
	DropAfter   time.Duration
	Poll        time.Duration
	Backoff     Backoff
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// OnOutcome, if set, is called after every attempt (for the journal).
	// err is the attempt's error (nil when sent).
	OnOutcome func(it Item, o Outcome, err error)
}

// Dispatcher sends the outbox's due items through their channels: up to
// Concurrency at once, each attempt bounded by SendTimeout, retried with
// exponential backoff with jitter until it is sent, fails permanently, or
// is older than DropAfter. Run runs it; Kick wakes it after an enqueue.
type Dispatcher struct {
	cfg  DispatcherConfig
	kick chan struct{}

	mu       sync.Mutex
	channels map[string]Configured
	inFlight map[string]bool
	counts   map[string]*Counts
}

// NewDispatcher returns a Dispatcher; it sends nothing until Run.
func NewDispatcher(c DispatcherConfig) (*Dispatcher, error) {
	if c.Outbox == nil {
		return nil, errors.New("notify: a dispatcher needs an outbox")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.SendTimeout <= 0 {
		c.SendTimeout = DefaultSendTimeout
	}
	if c.DropAfter <= 0 {
		c.DropAfter = DefaultDropAfter
	}
	if c.Poll <= 0 {
		c.Poll = DefaultPoll
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Backoff = c.Backoff.withDefaults()
	return &Dispatcher{
		cfg:      c,
		kick:     make(chan struct{}, 1),
		channels: c.Channels,
		inFlight: map[string]bool{},
		counts:   map[string]*Counts{},
	}, nil
}

// SetChannels replaces the channels (on reload). Items for a channel that
// no longer exists are marked failed when they come due.
func (d *Dispatcher) SetChannels(ch map[string]Configured) {
	d.mu.Lock()
	d.channels = ch
	d.mu.Unlock()
}

// Kick makes Run look at the outbox now rather than at its next poll.
func (d *Dispatcher) Kick() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Counts returns the outcome counters per channel.
func (d *Dispatcher) Counts() map[string]Counts {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]Counts, len(d.counts))
	for k, v := range d.counts {
		out[k] = *v
	}
	return out
}

// Run delivers due items until ctx ends, then waits for the sends in
// flight (whose contexts end with ctx) and returns ctx's error.
func (d *Dispatcher) Run(ctx context.Context) error {
	sem := make(chan struct{}, d.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		case <-d.kick:
		}
		d.pass(ctx, sem, &wg)
		timer.Reset(d.cfg.Poll)
	}
}

// pass starts a send for every due item not already in flight.
func (d *Dispatcher) pass(ctx context.Context, sem chan struct{}, wg *sync.WaitGroup) {
	due, err := d.cfg.Outbox.Due(ctx, d.cfg.Now(), 4*d.cfg.Concurrency+d.inFlightCount())
	if err != nil {
		if ctx.Err() == nil {
			d.cfg.Logger.Error("notify: reading the outbox", "err", err)
		}
		return
	}
	for _, it := range due {
		d.mu.Lock()
		busy := d.inFlight[it.ID]
		if !busy {
			d.inFlight[it.ID] = true
		}
		d.mu.Unlock()
		if busy {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			d.release(it.ID)
			return
		}
		wg.Add(1)
		go func(it Item) {
			defer wg.Done()
			defer func() { <-sem }()
			defer d.release(it.ID)
			d.attempt(ctx, it)
		}(it)
	}
}

func (d *Dispatcher) inFlightCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.inFlight)
}

func (d *Dispatcher) release(id string) {
	d.mu.Lock()
	delete(d.inFlight, id)
	d.mu.Unlock()
}

// attempt makes one delivery attempt of it and records the result.
func (d *Dispatcher) attempt(ctx context.Context, it Item) {
	log := d.cfg.Logger.With("channel", it.Channel, "message", it.Message.ID, "host", it.Message.Host)
	now := d.cfg.Now()
	if age := now.Sub(it.Enqueued); age > d.cfg.DropAfter {
		last := it.LastError
		if last == "" {
			last = "none, it was never attempted"
		}
		d.finish(ctx, log, it, OutcomeFailed, fmt.Errorf("dropped: not delivered within %s (queued %s ago); last error: %s", d.cfg.DropAfter, roundAge(age), last))
		return
	}
	d.mu.Lock()
	c, ok := d.channels[it.Channel]
	d.mu.Unlock()
	if !ok {
		d.finish(ctx, log, it, OutcomeFailed, fmt.Errorf("channel %q is no longer configured", it.Channel))
		return
	}
	sctx, cancel := context.WithTimeout(ctx, d.cfg.SendTimeout)
	err := c.Channel.Send(sctx, it.Message)
	cancel()
	switch {
	case err == nil:
		d.finish(ctx, log, it, OutcomeSent, nil)
	case ctx.Err() != nil:
		// Shutting down: the item stays pending and is retried after the
		// restart; this attempt does not count.
	case IsPermanent(err):
		d.finish(ctx, log, it, OutcomeFailed, err)
	default:
		next := d.cfg.Now().Add(d.cfg.Backoff.Delay(it.Attempts+1, rand.Float64()))
		if deadline := it.Enqueued.Add(d.cfg.DropAfter); next.After(deadline) {
			if !d.cfg.Now().Before(deadline) {
				d.finish(ctx, log, it, OutcomeFailed, fmt.Errorf("dropped: not delivered within %s; last error: %w", d.cfg.DropAfter, err))
				return
			}
			// The next attempt would come after the drop time; make the
			// last one right at it rather than giving up early.
			next = deadline
		}
		if rerr := d.cfg.Outbox.Reschedule(context.WithoutCancel(ctx), it.ID, next, err.Error()); rerr != nil {
			log.Error("notify: recording a failed attempt", "err", rerr)
			return
		}
		d.count(it.Channel, OutcomeRetried)
		log.Warn("notification attempt failed; will retry", "err", err, "attempt", it.Attempts+1, "next", next)
		if d.cfg.OnOutcome != nil {
			it.Attempts++
			it.LastError = err.Error()
			it.NextAttempt = next
			d.cfg.OnOutcome(it, OutcomeRetried, err)
		}
	}
}

// finish records a final outcome (sent or failed).
func (d *Dispatcher) finish(ctx context.Context, log *slog.Logger, it Item, o Outcome, err error) {
	// Record the outcome even when shutdown began during the send: a sent
	// item left pending would be sent again after the restart.
	ctx = context.WithoutCancel(ctx)
	var serr error
	if o == OutcomeSent {
		serr = d.cfg.Outbox.MarkSent(ctx, it.ID)
		it.State = Sent
	} else {
		serr = d.cfg.Outbox.MarkFailed(ctx, it.ID, err.Error())
		it.State, it.LastError = Failed, err.Error()
	}
	if serr != nil {
		log.Error("notify: recording the outcome in the outbox", "outcome", o, "err", serr)
		return
	}
	d.count(it.Channel, o)
	if o == OutcomeSent {
		log.Info("notification sent", "attempts", it.Attempts+1)
	} else {
		log.Error("notification failed; giving up", "err", err, "attempts", it.Attempts+1)
	}
	if d.cfg.OnOutcome != nil {
		d.cfg.OnOutcome(it, o, err)
	}
}

func (d *Dispatcher) count(channel string, o Outcome) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.counts[channel]
	if c == nil {
		c = &Counts{}
		d.counts[channel] = c
	}
	switch o {
	case OutcomeSent:
		c.Sent++
	case OutcomeRetried:
		c.Retried++
	case OutcomeFailed:
		c.Failed++
	}
}

// ChannelNames returns the configured channel names, sorted (for
// metrics that should show a zero for every channel).
func (d *Dispatcher) ChannelNames() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	names := make([]string, 0, len(d.channels))
	for n := range d.channels {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// roundAge rounds an age for messages: to the second, or the millisecond
// under a second.
func roundAge(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

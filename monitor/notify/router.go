package notify

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// AlertKey names one alert: a host's plugin field (Plugin and Field may be
// empty for host-level alerts such as reachability).
type AlertKey struct{ Host, Plugin, Field string }

// Key is the alert m is about.
func (m Message) Key() AlertKey { return AlertKey{m.Host, m.Plugin, m.Field} }

// AlertLog remembers which channels an ongoing alert was sent to, so that
// its recovery goes to those channels only. The monitor's store implements
// it durably; MemoryAlertLog is the in-memory one.
type AlertLog interface {
	// Alerted adds channels to the set that got the alert k.
	Alerted(ctx context.Context, k AlertKey, channels []string) error
	// Recovered returns the channels that got the alert k and forgets them.
	Recovered(ctx context.Context, k AlertKey) ([]string, error)
}

// MemoryAlertLog is an AlertLog kept in memory (tests, and hosts without
// a store). The zero value is ready to use.
type MemoryAlertLog struct {
	mu sync.Mutex
	m  map[AlertKey]map[string]bool
}

// Alerted implements AlertLog.
func (l *MemoryAlertLog) Alerted(_ context.Context, k AlertKey, channels []string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[AlertKey]map[string]bool{}
	}
	set := l.m[k]
	if set == nil {
		set = map[string]bool{}
		l.m[k] = set
	}
	for _, c := range channels {
		set[c] = true
	}
	return nil
}

// Recovered implements AlertLog.
func (l *MemoryAlertLog) Recovered(_ context.Context, k AlertKey) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for c := range l.m[k] {
		out = append(out, c)
	}
	delete(l.m, k)
	sort.Strings(out)
	return out, nil
}

// Router decides which channels a message goes to and puts one outbox
// item per channel; the Dispatcher sends them. It is safe for concurrent
// use; Update swaps the configuration on reload.
type Router struct {
	outbox Outbox
	log    AlertLog
	logger *slog.Logger
	kick   func()

	mu       sync.RWMutex
	channels map[string]Configured
	users    map[string][]string
}

// RouterConfig is what a Router needs.
type RouterConfig struct {
	Channels map[string]Configured
	// Users maps a user name to the channels in their
	// notification_channels list. With no users, every channel gets every
	// notification.
	Users  map[string][]string
	Outbox Outbox
	Log    AlertLog     // nil: a MemoryAlertLog
	Logger *slog.Logger // nil: slog.Default()
	Kick   func()       // called after enqueueing (Dispatcher.Kick); may be nil
}

// NewRouter checks that every user's channels exist and returns a Router.
func NewRouter(c RouterConfig) (*Router, error) {
	if c.Outbox == nil {
		return nil, fmt.Errorf("notify: a router needs an outbox")
	}
	r := &Router{outbox: c.Outbox, log: c.Log, logger: c.Logger, kick: c.Kick}
	if r.log == nil {
		r.log = &MemoryAlertLog{}
	}
	if r.logger == nil {
		r.logger = slog.Default()
	}
	if err := r.Update(c.Channels, c.Users); err != nil {
		return nil, err
	}
	return r, nil
}

// CheckUsers verifies that every channel a user lists is configured.
func CheckUsers(channels map[string]Configured, users map[string][]string) error {
	names := make([]string, 0, len(users))
	for u := range users {
		names = append(names, u)
	}
	sort.Strings(names)
	for _, u := range names {
		for _, c := range users[u] {
			if _, ok := channels[c]; !ok {
				return fmt.Errorf("user %q: notification channel %q is not defined in notification_channels; defined: %s", u, c, strings.Join(sortedKeys(channels), ", "))
			}
		}
	}
	return nil
}

// Update replaces the channels and users (on reload), after checking them.
func (r *Router) Update(channels map[string]Configured, users map[string][]string) error {
	if err := CheckUsers(channels, users); err != nil {
		return err
	}
	r.mu.Lock()
	r.channels, r.users = channels, users
	r.mu.Unlock()
	return nil
}

// Route returns the channels m goes to, without enqueueing anything:
//   - a recovery goes to the channels that got the alert (and it makes the
//     alert log forget them), whatever their min_level or the recipients;
//   - otherwise, with no users configured or no recipients named, every
//     channel; else the channels of the named recipients (unknown names are
//     logged and skipped); then each channel's min_level filters.
func (r *Router) Route(ctx context.Context, m Message) ([]string, error) {
	r.mu.RLock()
	channels, users := r.channels, r.users
	r.mu.RUnlock()
	if m.IsRecovery() {
		got, err := r.log.Recovered(ctx, m.Key())
		if err != nil {
			return nil, fmt.Errorf("notify: reading which channels got the alert: %w", err)
		}
		// A channel removed since the alert cannot carry the recovery.
		return slices.DeleteFunc(got, func(c string) bool { _, ok := channels[c]; return !ok }), nil
	}
	var candidates []string
	if len(users) == 0 || len(m.Recipients) == 0 {
		candidates = sortedKeys(channels)
	} else {
		seen := map[string]bool{}
		for _, u := range m.Recipients {
			list, ok := users[u]
			if !ok {
				r.logger.Warn("notification recipient is not a configured user", "user", u, "host", m.Host)
				continue
			}
			for _, c := range list {
				if !seen[c] {
					seen[c] = true
					candidates = append(candidates, c)
				}
			}
		}
		sort.Strings(candidates)
	}
	var out []string
	for _, c := range candidates {
		if m.Test || m.Level.AtLeast(channels[c].MinLevel) {
			out = append(out, c)
		}
	}
	return out, nil
}

// Deliver routes m, records which channels get an alert, and enqueues one
// outbox item per channel. It returns the channels chosen.
func (r *Router) Deliver(ctx context.Context, m Message) ([]string, error) {
	if m.ID == "" {
		m.ID = NewID()
	}
	if m.Time.IsZero() {
		m.Time = time.Now()
	}
	to, err := r.Route(ctx, m)
	if err != nil {
		return nil, err
	}
	if len(to) == 0 {
		return nil, nil
	}
	if !m.IsRecovery() && !m.Test {
		if err := r.log.Alerted(ctx, m.Key(), to); err != nil {
			return nil, fmt.Errorf("notify: recording which channels get the alert: %w", err)
		}
	}
	for _, c := range to {
		if err := r.outbox.Enqueue(ctx, m, c); err != nil {
			return nil, fmt.Errorf("notify: queueing the notification for %s: %w", c, err)
		}
	}
	if r.kick != nil {
		r.kick()
	}
	return to, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

package monitor

import "sync/atomic"

// Stats are the engine's own counters since it started (for /metrics).
type Stats struct {
	// Observations accepted, and refused (max_hosts).
	Observations, Refused uint64
	// Samples is the numeric field values taken in.
	Samples uint64
	// Transitions is alert level changes; Notifications those handed to
	// the Notifier.
	Transitions, Notifications uint64
	// StoreErrors counts state changes whose saving failed.
	StoreErrors uint64
	// Hosts is the number of hosts tracked now.
	Hosts int
}

type counters struct {
	observations, refused, samples, transitions, notifications, storeErrors atomic.Uint64
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	n := len(e.hosts)
	e.mu.Unlock()
	return Stats{
		Observations:  e.stats.observations.Load(),
		Refused:       e.stats.refused.Load(),
		Samples:       e.stats.samples.Load(),
		Transitions:   e.stats.transitions.Load(),
		Notifications: e.stats.notifications.Load(),
		StoreErrors:   e.stats.storeErrors.Load(),
		Hosts:         n,
	}
}

package daemon

import (
	"strconv"
	"time"

	"github.com/mbvm/mb/vm/spec"
)

// Backoff tunes restarts under a restart policy: the first restart waits
// Base, each further one within Window waits twice as long up to Max, and
// after Limit restarts within Window the daemon gives up.
type Backoff struct {
	Base   time.Duration
	Max    time.Duration
	Limit  int
	Window time.Duration
}

// Default restart tuning.
const (
	DefaultRestartBase   = time.Second
	DefaultRestartMax    = 30 * time.Second
	DefaultRestartLimit  = 5
	DefaultRestartWindow = 10 * time.Minute
)

func (b Backoff) withDefaults() Backoff {
	if b.Base <= 0 {
		b.Base = DefaultRestartBase
	}
	if b.Max <= 0 {
		b.Max = DefaultRestartMax
	}
	if b.Limit <= 0 {
		b.Limit = DefaultRestartLimit
	}
	if b.Window <= 0 {
		b.Window = DefaultRestartWindow
	}
	return b
}

// exitKind says how a run ended.
type exitKind int

const (
	exitClean       exitKind = iota // a requested stop or a guest power-off
	exitCrash                       // QEMU or vmhost failed
	exitStartFailed                 // vmhost could not start the VM at all
)

// restartDecision is what the daemon does after a run ends.
type restartDecision struct {
	Restart bool
	Delay   time.Duration
	// GaveUp is true when the policy wanted a restart but the limit was
	// reached.
	GaveUp bool
	Why    string
}

// decideRestart applies the restart policy to a run that ended. history
// holds the times of earlier restarts. A VM the user stopped never
// restarts; a crash restarts under on-failure and always; a clean end (a
// guest power-off) only under always; a VM that could not start at all is
// not retried, since the same spec would fail again.
func decideRestart(b Backoff, policy spec.RestartPolicy, kind exitKind, userStopped bool, history []time.Time, now time.Time) restartDecision {
	b = b.withDefaults()
	switch {
	case userStopped:
		return restartDecision{Why: "stopped by the user"}
	case kind == exitStartFailed:
		return restartDecision{Why: "the VM could not start"}
	case policy == spec.RestartAlways:
	case policy == spec.RestartOnFailure && kind == exitCrash:
	default:
		return restartDecision{Why: "restart policy " + string(policy)}
	}
	recent := 0
	for _, t := range history {
		if now.Sub(t) < b.Window {
			recent++
		}
	}
	if recent >= b.Limit {
		return restartDecision{GaveUp: true, Why: "restart limit reached: " + strconv.Itoa(recent) + " restarts within " + b.Window.String()}
	}
	delay := b.Base
	for i := 0; i < recent && delay < b.Max; i++ {
		delay *= 2
	}
	if delay > b.Max {
		delay = b.Max
	}
	return restartDecision{Restart: true, Delay: delay, Why: "restart policy " + string(policy)}
}

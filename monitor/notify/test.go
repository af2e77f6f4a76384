package notify

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// TestResult is what happened to the test message on one channel.
type TestResult struct {
	Channel  string        `json:"channel"`
	Type     string        `json:"type"`
	OK       bool          `json:"ok"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration_ns"`
}

// Test sends a test message through every channel, or only the one named
// (for `mb monitor notify test [CHANNEL]`), directly rather than through
// the outbox and all at once, each attempt bounded by DefaultSendTimeout
// (or ctx). It returns one result per channel, sorted by name; the error
// is only for an unknown channel name.
func Test(ctx context.Context, channels map[string]Configured, name string) ([]TestResult, error) {
	names := sortedKeys(channels)
	if name != "" {
		if _, ok := channels[name]; !ok {
			if len(names) == 0 {
				return nil, fmt.Errorf("no notification channel %q: notification_channels is empty", name)
			}
			return nil, fmt.Errorf("no notification channel %q; configured: %s", name, strings.Join(names, ", "))
		}
		names = []string{name}
	}
	host, _ := os.Hostname()
	m := Message{
		ID:    NewID(),
		Time:  time.Now(),
		Host:  host,
		Field: "notification test",
		Level: Warning,
		Text:  fmt.Sprintf("mb test notification from %s: this channel works", host),
		Test:  true,
	}
	results := make([]TestResult, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := channels[n].Channel
			start := time.Now()
			sctx, cancel := context.WithTimeout(ctx, DefaultSendTimeout)
			err := c.Send(sctx, m)
			cancel()
			r := TestResult{Channel: n, Type: c.Type(), OK: err == nil, Duration: time.Since(start)}
			if err != nil {
				r.Error = err.Error()
			}
			results[i] = r
		}()
	}
	wg.Wait()
	return results, nil
}

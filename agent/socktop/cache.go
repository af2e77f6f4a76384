package socktop

import (
	"sync"
	"time"
)

// cache holds one value for a TTL. Callers that arrive while the value is
// being computed wait for it instead of computing it again, so many
// clients cost what one does.
type cache[T any] struct {
	mu    sync.Mutex
	ttl   time.Duration
	at    time.Time
	valid bool
	val   T
}

// get returns the cached value, or computes a new one with fill when the
// old one is older than the TTL.
func (c *cache[T]) get(now func() time.Time, fill func() T) T {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.valid && now().Sub(c.at) < c.ttl {
		return c.val
	}
	c.val = fill()
	c.at, c.valid = now(), true
	return c.val
}

// fresh returns the cached value if it is within its TTL, without
// computing anything.
func (c *cache[T]) fresh(now func() time.Time) (T, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.valid && now().Sub(c.at) < c.ttl {
		return c.val, true
	}
	var zero T
	return zero, false
}

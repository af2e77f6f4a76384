package fleet

import (
	"net/netip"
	"sync"
	"time"
)

// DefaultACKRate bounds the answers sent to one source address per second,
// so that heartbeats with a forged source cannot turn the receiver into a
// reflector (an ACK is larger than the smallest HTB). It is high enough
// for thousands of hosts behind one NAT address.
const DefaultACKRate = 2000

// maxLimited bounds the addresses tracked in one second; past it, new
// addresses get no answer until the next second.
const maxLimited = 1 << 16

// ackLimiter counts answers per source address in one-second windows.
type ackLimiter struct {
	rate int
	mu   sync.Mutex
	win  int64
	n    map[netip.Addr]int
}

// allow reports whether one more answer may go to addr now.
func (l *ackLimiter) allow(addr netip.Addr, now time.Time) bool {
	sec := now.Unix()
	l.mu.Lock()
	defer l.mu.Unlock()
	if sec != l.win || l.n == nil {
		l.win, l.n = sec, make(map[netip.Addr]int, len(l.n))
	}
	c, ok := l.n[addr]
	if !ok && len(l.n) >= maxLimited {
		return false
	}
	if c >= l.rate {
		return false
	}
	l.n[addr] = c + 1
	return true
}

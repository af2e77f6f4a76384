package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"
)

// DefaultSessionTTL is how long a session lasts after sign-in.
const DefaultSessionTTL = 24 * time.Hour

// Session is one signed-in user. Its token is known only to the client;
// the Sessions keep a SHA-256 digest of it.
type Session struct {
	User    string
	CSRF    string // sent with every cookie-authenticated change
	Created time.Time
	Expires time.Time
}

// Sessions holds the sessions of signed-in users in memory (a restart
// signs everyone out). Tokens are 256 random bits; only their digests
// are kept, so a memory dump does not give a usable token. It is safe for
// concurrent use.
type Sessions struct {
	// TTL is a session's lifetime (default DefaultSessionTTL).
	TTL time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Max bounds the sessions kept; the oldest go first (default 10000).
	Max int

	mu   sync.Mutex
	byID map[[sha256.Size]byte]*Session
}

// NewSessions returns an empty session table.
func NewSessions() *Sessions {
	return &Sessions{byID: map[[sha256.Size]byte]*Session{}}
}

func (s *Sessions) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// randomToken is 256 random bits in URL-safe base64.
func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Create starts a session for user and returns its token.
func (s *Sessions) Create(user string) (string, Session, error) {
	tok, err := randomToken()
	if err != nil {
		return "", Session{}, err
	}
	csrf, err := randomToken()
	if err != nil {
		return "", Session{}, err
	}
	ttl := s.TTL
	if ttl <= 0 {
		ttl = DefaultSessionTTL
	}
	now := s.now()
	sess := &Session{User: user, CSRF: csrf, Created: now, Expires: now.Add(ttl)}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byID[sha256.Sum256([]byte(tok))] = sess
	s.prune(now)
	return tok, *sess, nil
}

// prune drops expired sessions and, above Max, the oldest. s.mu is held.
func (s *Sessions) prune(now time.Time) {
	max := s.Max
	if max <= 0 {
		max = 10000
	}
	for id, x := range s.byID {
		if !now.Before(x.Expires) {
			delete(s.byID, id)
		}
	}
	for len(s.byID) > max {
		var oldest [sha256.Size]byte
		var at time.Time
		first := true
		for id, x := range s.byID {
			if first || x.Created.Before(at) {
				oldest, at, first = id, x.Created, false
			}
		}
		delete(s.byID, oldest)
	}
}

// Lookup returns the live session of token.
func (s *Sessions) Lookup(token string) (Session, bool) {
	if token == "" {
		return Session{}, false
	}
	id := sha256.Sum256([]byte(token))
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	x, ok := s.byID[id]
	if !ok {
		return Session{}, false
	}
	if !now.Before(x.Expires) {
		delete(s.byID, id)
		return Session{}, false
	}
	return *x, true
}

// End ends the session of token (signing out).
func (s *Sessions) End(token string) {
	id := sha256.Sum256([]byte(token))
	s.mu.Lock()
	delete(s.byID, id)
	s.mu.Unlock()
}

// EndUser ends every session of user except the one of keep ("" for
// none): a changed password or a removed user signs them out.
func (s *Sessions) EndUser(user, keep string) int {
	var kept [sha256.Size]byte
	if keep != "" {
		kept = sha256.Sum256([]byte(keep))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id, x := range s.byID {
		if x.User == user && (keep == "" || id != kept) {
			delete(s.byID, id)
			n++
		}
	}
	return n
}

// Len is the number of sessions held.
func (s *Sessions) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

// CheckCSRF reports whether got is the session's CSRF token.
func (x Session) CheckCSRF(got string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(x.CSRF)) == 1
}

// Limiter counts failed sign-ins by key (a user name, an address) and
// refuses a key that failed Burst times within Window until the window
// has passed. It is safe for concurrent use.
type Limiter struct {
	// Burst failures are allowed per Window (defaults 5 and 5 minutes).
	Burst  int
	Window time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time

	mu   sync.Mutex
	keys map[string]*failures
}

type failures struct {
	n     int
	start time.Time
}

// NewLimiter returns a Limiter with the defaults.
func NewLimiter() *Limiter { return &Limiter{keys: map[string]*failures{}} }

func (l *Limiter) params() (int, time.Duration, time.Time) {
	b, w := l.Burst, l.Window
	if b <= 0 {
		b = 5
	}
	if w <= 0 {
		w = 5 * time.Minute
	}
	now := time.Now()
	if l.Now != nil {
		now = l.Now()
	}
	return b, w, now
}

// Allowed reports whether key may try again, and if not, how long until
// it may.
func (l *Limiter) Allowed(key string) (bool, time.Duration) {
	burst, window, now := l.params()
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.keys[key]
	if !ok {
		return true, 0
	}
	end := f.start.Add(window)
	if !now.Before(end) {
		delete(l.keys, key)
		return true, 0
	}
	if f.n >= burst {
		return false, end.Sub(now)
	}
	return true, 0
}

// Fail counts a failure of key.
func (l *Limiter) Fail(key string) {
	_, window, now := l.params()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.keys) > 100000 {
		clear(l.keys) // a flood of distinct keys: forget rather than grow
	}
	f, ok := l.keys[key]
	if !ok || !now.Before(f.start.Add(window)) {
		f = &failures{start: now}
		l.keys[key] = f
	}
	f.n++
}

// Reset forgets key's failures (after a success).
func (l *Limiter) Reset(key string) {
	l.mu.Lock()
	delete(l.keys, key)
	l.mu.Unlock()
}

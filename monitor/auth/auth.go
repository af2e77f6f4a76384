// Package auth checks the monitor's user passwords. monitor.yaml keeps them
// as hashes in the layout hbd inherited from Werkzeug,
// pbkdf2:sha256:ITERATIONS$SALT$HEX: PBKDF2-HMAC-SHA256 over the password
// with SALT's text as the salt, a 32-byte key, written in lower-case hex.
// An hbd config's hashes work unchanged.
//
// A check costs one PBKDF2 run (about a tenth of a second at hbd's 260,000
// iterations), so a Verifier remembers recent successes under a keyed
// digest of the password and bounds how many runs happen at once.
package auth

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultIterations is hbd's iteration count (hbd passwd), used by Make and
// assumed when a hash does not name one.
const DefaultIterations = 260000

// Hash is a parsed password hash.
type Hash struct {
	Iterations int
	Salt       string
	Key        []byte
}

// ParseHash reads pbkdf2:sha256:ITER$SALT$HEX (":ITER" may be left out,
// meaning DefaultIterations).
func ParseHash(s string) (Hash, error) {
	const layout = "pbkdf2:sha256:ITERATIONS$SALT$HEX"
	method, rest, ok := strings.Cut(s, "$")
	if !ok {
		return Hash{}, fmt.Errorf("not a password hash (want %s; make one with `mb monitor passwd NAME`)", layout)
	}
	salt, hexKey, ok := strings.Cut(rest, "$")
	if !ok || salt == "" || hexKey == "" {
		return Hash{}, fmt.Errorf("password hash has no salt or no key (want %s)", layout)
	}
	parts := strings.Split(method, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] != "pbkdf2" {
		return Hash{}, fmt.Errorf("password hash method %q is not supported (want %s)", method, layout)
	}
	if parts[1] != "sha256" {
		return Hash{}, fmt.Errorf("password hash digest %q is not supported (accepted: sha256)", parts[1])
	}
	h := Hash{Iterations: DefaultIterations, Salt: salt}
	if len(parts) == 3 {
		n, err := strconv.Atoi(parts[2])
		if err != nil || n < 1 || n > 100_000_000 {
			return Hash{}, fmt.Errorf("password hash iteration count %q is not a number from 1 to 100000000", parts[2])
		}
		h.Iterations = n
	}
	if hexKey != strings.ToLower(hexKey) {
		return Hash{}, errors.New("password hash key must be lower-case hex")
	}
	key, err := hex.DecodeString(hexKey)
	if err != nil || len(key) != sha256.Size {
		return Hash{}, fmt.Errorf("password hash key must be %d lower-case hex digits", 2*sha256.Size)
	}
	h.Key = key
	return h, nil
}

// String renders the hash in its config layout.
func (h Hash) String() string {
	return fmt.Sprintf("pbkdf2:sha256:%d$%s$%s", h.Iterations, h.Salt, hex.EncodeToString(h.Key))
}

// Check reports whether password matches, comparing in constant time.
func (h Hash) Check(password string) bool {
	if len(h.Key) == 0 {
		return false
	}
	key, err := pbkdf2.Key(sha256.New, password, []byte(h.Salt), h.Iterations, len(h.Key))
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(key, h.Key) == 1
}

// Make hashes a password with a new random salt and the given iterations
// (0: DefaultIterations).
func Make(password string, iterations int) (string, error) {
	if iterations <= 0 {
		iterations = DefaultIterations
	}
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	key, err := pbkdf2.Key(sha256.New, password, b, iterations, sha256.Size)
	if err != nil {
		return "", err
	}
	return Hash{Iterations: iterations, Salt: string(b), Key: key}.String(), nil
}

// Verifier checks user names and passwords against a set of hashes,
// remembering successes for a while so that a client sending Basic
// credentials with every request (a Prometheus scraping every second) does
// not cost a PBKDF2 run each time. It is safe for concurrent use.
type Verifier struct {
	// TTL is how long a success is remembered (default 5 minutes).
	TTL time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time

	sem    chan struct{}
	secret []byte

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	digest [sha256.Size]byte
	hash   string // the hash it was checked against, so a changed hash misses
	until  time.Time
}

// NewVerifier returns a Verifier that runs at most parallel PBKDF2 checks
// at once (0: 2).
func NewVerifier(parallel int) *Verifier {
	if parallel <= 0 {
		parallel = 2
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	return &Verifier{sem: make(chan struct{}, parallel), secret: secret, cache: map[string]cached{}}
}

// Verify reports whether password is user's, given the users' hashes.
// An unknown user costs the same as a wrong password.
func (v *Verifier) Verify(hashes map[string]Hash, user, password string) bool {
	h, known := hashes[user]
	if !known {
		// Spend the same work, so a timing does not tell which names exist.
		h = Hash{Iterations: DefaultIterations, Salt: "unknown-user", Key: make([]byte, sha256.Size)}
	}
	mac := hmac.New(sha256.New, v.secret)
	mac.Write([]byte(user))
	mac.Write([]byte{0})
	mac.Write([]byte(password))
	var digest [sha256.Size]byte
	copy(digest[:], mac.Sum(nil))
	now := v.now()
	hs := h.String()
	if known {
		v.mu.Lock()
		c, ok := v.cache[user]
		v.mu.Unlock()
		if ok && c.hash == hs && now.Before(c.until) && subtle.ConstantTimeCompare(c.digest[:], digest[:]) == 1 {
			return true
		}
	}
	v.sem <- struct{}{}
	ok := h.Check(password)
	<-v.sem
	if !ok || !known {
		return false
	}
	ttl := v.TTL
	if ttl <= 0 {
		ttl = 5 * time.Minute
	}
	v.mu.Lock()
	if len(v.cache) > 1024 {
		clear(v.cache)
	}
	v.cache[user] = cached{digest: digest, hash: hs, until: now.Add(ttl)}
	v.mu.Unlock()
	return true
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

package daemon

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/mbvm/mb/daemon/api"
)

// Limits of the API server. Idle and trickling clients must not hold the
// daemon's descriptors: a request's header must arrive within
// headerTimeout and its body within bodyTimeout, a keep-alive connection
// is closed after idleTimeout, and at most Config.MaxConns connections are
// open at once.
const (
	headerTimeout = 10 * time.Second
	bodyTimeout   = 30 * time.Second
	idleTimeout   = 60 * time.Second
	// DefaultMaxConns caps the API's concurrent connections; a lower
	// descriptor limit lowers it (see defaultMaxConns).
	DefaultMaxConns = 512
)

// defaultMaxConns is DefaultMaxConns, or half the descriptor limit when
// that is lower, so the daemon keeps descriptors for its VMs.
func defaultMaxConns() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur/2 < DefaultMaxConns {
		return max(int(rl.Cur/2), 8)
	}
	return DefaultMaxConns
}

// connLimiter caps the open connections of a listener. At the cap, a new
// connection evicts the connection that has waited longest without a
// request being handled on it (a client that connected and sends nothing,
// trickles a request, or idles between requests); when every connection is
// busy in a handler (log and event follows), the new one is answered 503
// with code "busy" and closed. Accept errors (EMFILE) are retried with a
// backoff and logged at most once per logEvery.
type connLimiter struct {
	net.Listener
	max int
	log *slog.Logger

	mu    sync.Mutex
	conns map[*limitedConn]struct{}

	// refusing bounds the refused connections being answered at once.
	refusing chan struct{}

	// Rate-limited logging of refusals, evictions and accept errors.
	logMu      sync.Mutex
	lastLog    map[string]time.Time
	suppressed map[string]int
}

const logEvery = 10 * time.Second

func newConnLimiter(ln net.Listener, max int, log *slog.Logger) *connLimiter {
	return &connLimiter{Listener: ln, max: max, log: log, conns: map[*limitedConn]struct{}{},
		refusing: make(chan struct{}, maxRefusing),
		lastLog:  map[string]time.Time{}, suppressed: map[string]int{}}
}

// limitedConn is one connection of a connLimiter.
type limitedConn struct {
	net.Conn
	l         *connLimiter
	busy      bool      // a handler works on a request of it (under l.mu)
	since     time.Time // when it last became evictable (under l.mu)
	closeOnce sync.Once
}

// Close closes the connection and frees its place.
func (c *limitedConn) Close() error {
	c.closeOnce.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// setBusy marks the connection as working on a request (not evictable) or
// not.
func (c *limitedConn) setBusy(on bool) {
	c.l.mu.Lock()
	c.busy = on
	if !on {
		c.since = time.Now()
	}
	c.l.mu.Unlock()
}

// Accept returns the next connection, making room for it at the cap.
func (l *connLimiter) Accept() (net.Conn, error) {
	backoff := 5 * time.Millisecond
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			l.logLimited("accept", "accepting a connection failed; retrying", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			backoff = min(backoff*2, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		lc := &limitedConn{Conn: c, l: l, since: time.Now()}
		l.mu.Lock()
		var victim *limitedConn
		if len(l.conns) >= l.max {
			for o := range l.conns {
				if !o.busy && (victim == nil || o.since.Before(victim.since)) {
					victim = o
				}
			}
			if victim == nil {
				n := len(l.conns)
				l.mu.Unlock()
				l.logLimited("refuse", "refused a connection: every connection is busy", "limit", l.max)
				select {
				case l.refusing <- struct{}{}:
					go func() {
						defer func() { <-l.refusing }()
						refuseBusy(c, n)
					}()
				default:
					c.Close() // a flood: no descriptor is held for it
				}
				continue
			}
			delete(l.conns, victim)
		}
		l.conns[lc] = struct{}{}
		l.mu.Unlock()
		if victim != nil {
			l.logLimited("evict", "closed the longest-waiting connection to make room", "limit", l.max)
			victim.Conn.Close()
		}
		return lc, nil
	}
}

// maxRefusing bounds the refused connections answered at once; beyond it
// a refused connection is closed without an answer.
const maxRefusing = 16

// refuseWait bounds how long a refused connection may take to send its
// request before it is answered anyway.
const refuseWait = 2 * time.Second

// refuseBusy answers a connection 503 with code busy and closes it. The
// request is read first: answering and closing before the client has
// written would fail its write with EPIPE, and the client would see a
// broken pipe instead of the reason.
func refuseBusy(c net.Conn, n int) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(refuseWait))
	if req, err := http.ReadRequest(bufio.NewReaderSize(c, 4096)); err == nil {
		// Take a small body too, so the close does not cut the client's
		// write short; a large one is left (the client sees the answer
		// first).
		_, _ = io.Copy(io.Discard, io.LimitReader(req.Body, 64<<10))
	}
	body := fmt.Sprintf(`{"error": "the mb daemon has %d connections open, all busy: retry shortly", "code": %q}`+"\n", n, api.CodeBusy)
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = fmt.Fprintf(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// logLimited logs msg at most once per logEvery per kind, with the count
// of the messages it held back.
func (l *connLimiter) logLimited(kind, msg string, args ...any) {
	l.logMu.Lock()
	now := time.Now()
	if now.Sub(l.lastLog[kind]) < logEvery {
		l.suppressed[kind]++
		l.logMu.Unlock()
		return
	}
	n := l.suppressed[kind]
	l.lastLog[kind], l.suppressed[kind] = now, 0
	l.logMu.Unlock()
	l.log.Warn(msg, append(args, "similar_since_last_log", n)...)
}

type connKey struct{}

// connContext remembers the connection of each request (http.Server's
// ConnContext).
func connContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// limitRequests reads a request's body within bodyTimeout (a client that
// trickles it is cut off and its connection stays evictable meanwhile),
// then marks the connection busy while the handler runs.
func limitRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lc, _ := r.Context().Value(connKey{}).(*limitedConn)
		if r.Body != nil && r.Body != http.NoBody {
			rc := http.NewResponseController(w)
			_ = rc.SetReadDeadline(time.Now().Add(bodyTimeout))
			data, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
			_ = rc.SetReadDeadline(time.Time{})
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					writeError(w, errorf(http.StatusRequestTimeout, "request body not received within %s", bodyTimeout))
					return
				}
				writeError(w, errorf(http.StatusBadRequest, "read request body: %v", err))
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(data))
		}
		if lc != nil {
			lc.setBusy(true)
			defer lc.setBusy(false)
		}
		h.ServeHTTP(w, r)
	})
}

package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Limits of the TCP listener.
const (
	// MaxConns bounds the connections open at once; more wait in the
	// kernel's backlog.
	MaxConns = 64
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout bound
	// a slow or idle client.
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 30 * time.Second
	WriteTimeout      = 60 * time.Second
	IdleTimeout       = 2 * time.Minute
	// MaxHeaderBytes bounds a request's headers.
	MaxHeaderBytes = 64 << 10
)

// listener is the TCP listener of monitor.yaml's listen key.
type listener struct {
	ln   net.Listener
	srv  *http.Server
	once sync.Once
	done chan struct{}
}

// listen binds addr and prepares its server (the API behind the users'
// authentication); it serves once serve is called.
func (s *Service) listen(addr string) (*listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("monitor: listen %s: %w", addr, err)
	}
	l := &listener{
		ln: &limitListener{Listener: ln, sem: make(chan struct{}, MaxConns)},
		srv: &http.Server{
			Handler:           s.withFleet(s.authenticate(s.handler)),
			ReadHeaderTimeout: ReadHeaderTimeout,
			ReadTimeout:       ReadTimeout,
			WriteTimeout:      WriteTimeout,
			IdleTimeout:       IdleTimeout,
			MaxHeaderBytes:    MaxHeaderBytes,
		},
		done: make(chan struct{}),
	}
	s.log.Info("monitor listening", "addr", ln.Addr().String())
	return l, nil
}

// serve serves until shutdown; wg, when given, waits for it.
func (l *listener) serve(ctx context.Context, wg *sync.WaitGroup) {
	l.srv.BaseContext = func(net.Listener) context.Context { return ctx }
	if wg != nil {
		wg.Add(1)
	}
	go func() {
		if wg != nil {
			defer wg.Done()
		}
		defer close(l.done)
		_ = l.srv.Serve(l.ln)
	}()
}

// shutdown stops accepting, lets requests in flight finish for a few
// seconds, and closes what is left.
func (l *listener) shutdown() {
	l.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := l.srv.Shutdown(ctx); err != nil {
			l.srv.Close()
		}
		// Serve never ran: Shutdown does not close the listener then.
		l.ln.Close()
	})
}

// limitListener accepts at most cap(sem) connections at once.
type limitListener struct {
	net.Listener
	sem chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	l.sem <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// authenticate requires HTTP Basic credentials of a configured user when
// any user has a password; without (allowed only on loopback) it lets
// every request through.
func (s *Service) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ld := s.cur.Load()
		if len(ld.hashes) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		user, pass, ok := r.BasicAuth()
		if !ok || !s.verifier.Verify(ld.hashes, user, pass) {
			w.Header().Set("WWW-Authenticate", `Basic realm="mb monitor", charset="UTF-8"`)
			writeError(w, http.StatusUnauthorized, errors.New("authentication required: give a configured user's name and password (HTTP Basic)"))
			return
		}
		next.ServeHTTP(w, r.WithContext(withAuthenticated(r.Context(), user, ld.cfg.Users[user].Admin)))
	})
}

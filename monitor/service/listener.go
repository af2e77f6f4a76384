package service

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/mbvm/mb/monitor/config"
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
func (s *Service) listen(cfg *config.Config) (*listener, error) {
	addr := cfg.Listen
	tc, err := s.tlsConfig(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("monitor: listen %s: %w", addr, err)
	}
	var inner net.Listener = &limitListener{Listener: ln, sem: make(chan struct{}, MaxConns)}
	if tc != nil {
		inner = tls.NewListener(inner, tc)
	}
	l := &listener{
		ln: inner,
		srv: &http.Server{
			Handler:           s.withFleet(s.siteHandler()),
			ReadHeaderTimeout: ReadHeaderTimeout,
			ReadTimeout:       ReadTimeout,
			WriteTimeout:      WriteTimeout,
			IdleTimeout:       IdleTimeout,
			MaxHeaderBytes:    MaxHeaderBytes,
		},
		done: make(chan struct{}),
	}
	s.log.Info("monitor listening", "addr", ln.Addr().String(), "tls", tc != nil)
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

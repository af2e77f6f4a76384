// Package daemon is the mb daemon: one per user, it knows every VM under
// $MB_HOME/vms, spawns one vmhost per running VM (in its own session, so VMs
// outlive the daemon), re-adopts running vmhosts when it starts, watches each
// for its exit, restarts VMs per their restart policy, and serves the
// HTTP/JSON API of package api on $MB_HOME/mb.sock.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/internal/atomicfile"
	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/internal/lockfile"
)

// Files of the daemon inside $MB_HOME.
const (
	LockName = "daemon.lock"
	PIDName  = "daemon.pid"
	LogName  = "daemon.log"
)

// Config configures a Daemon.
type Config struct {
	// Home is $MB_HOME.
	Home string
	// VMHost is the vmhost binary to spawn.
	VMHost string
	// Version is reported by GET /v1/daemon.
	Version string
	// Logger receives the daemon's logs.
	Logger *slog.Logger
	// Restart tunes the restart policy; zero fields use the defaults.
	Restart Backoff
	// MaxConns caps the API's open connections; 0 uses DefaultMaxConns,
	// or half the descriptor limit when that is lower.
	MaxConns int
}

// Daemon is a running mb daemon.
type Daemon struct {
	cfg     Config
	log     *slog.Logger
	events  *eventBus
	started time.Time

	// ctx ends when the daemon shuts down; background work watches it.
	ctx      context.Context
	shutdown context.CancelCauseFunc
	stopVMs  bool // set by a stop request asking to stop the VMs too

	mu  sync.Mutex
	vms map[string]*vm

	// mon is the monitor the daemon hosts (nil until Run opens it).
	mon *monitorHost

	wg sync.WaitGroup // background goroutines (restarts, rotation)
}

// ErrAlreadyRunning is returned by Run when another daemon holds the lock.
var ErrAlreadyRunning = errors.New("mb daemon is already running")

// New prepares a daemon; Run starts it.
func New(cfg Config) *Daemon {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	cfg.Restart = cfg.Restart.withDefaults()
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = defaultMaxConns()
	}
	return &Daemon{cfg: cfg, log: cfg.Logger, events: newEventBus(1000), vms: map[string]*vm{}}
}

// SocketPath is the daemon socket inside home.
func SocketPath(mbHome string) string { return filepath.Join(mbHome, api.SocketName) }

// Run takes the single-instance lock, re-adopts the VMs, serves the API and
// returns when ctx ends or a client asks the daemon to stop. VMs keep
// running after Run returns unless the stop request asked to stop them.
func (d *Daemon) Run(ctx context.Context) error {
	h := d.cfg.Home
	if err := layout.EnsureHome(h); err != nil {
		return err
	}
	if err := layout.Ensure(layout.VMsDir(h)); err != nil {
		return err
	}
	lock, err := lockfile.Acquire(filepath.Join(h, LockName))
	if err != nil {
		var held *lockfile.HeldError
		if errors.As(err, &held) {
			who := "another process"
			if held.PID > 0 {
				who = "PID " + strconv.Itoa(held.PID)
			}
			return fmt.Errorf("%w (%s, socket %s): use `mb daemon status` to look at it or `mb daemon stop` to stop it", ErrAlreadyRunning, who, SocketPath(h))
		}
		return fmt.Errorf("take the daemon lock: %w", err)
	}
	defer lock.Release()
	pidPath := filepath.Join(h, PIDName)
	if err := atomicfile.Write(pidPath, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", pidPath, err)
	}
	defer os.Remove(pidPath)

	sock := SocketPath(h)
	if err := checkSocketPath(sock); err != nil {
		return err
	}
	// We hold the lock, so a socket file left here is stale.
	_ = os.Remove(sock)
	ln, err := listenSocket(sock)
	if err != nil {
		return err
	}
	defer os.Remove(sock)

	d.started = time.Now()
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	d.ctx, d.shutdown = runCtx, cancel

	d.log.Info("mb daemon starting", "pid", os.Getpid(), "home", h, "socket", sock, "vmhost", d.cfg.VMHost)
	d.adoptAll()
	// The monitor failing to open (its database unreadable) must not keep
	// the daemon from managing VMs: it is logged, and its API says so.
	if mon, err := d.openMonitor(runCtx); err != nil {
		d.log.Error("the monitor cannot start; VMs are managed but not monitored", "err", err)
	} else {
		d.mu.Lock()
		d.mon = mon
		d.mu.Unlock()
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			mon.run(runCtx)
		}()
	}

	// Timeouts and a connection cap keep idle and trickling clients from
	// holding the daemon's descriptors (see limit.go); no write timeout,
	// as log and event follows stream for as long as the client reads.
	srv := &http.Server{Handler: limitRequests(d.routes()), ReadHeaderTimeout: headerTimeout, IdleTimeout: idleTimeout,
		ConnContext: connContext, ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelDebug),
		BaseContext: func(net.Listener) context.Context { return runCtx }}
	serveErr := make(chan error, 1)
	lim := newConnLimiter(&peerListener{Listener: ln, log: d.log}, d.cfg.MaxConns, d.log)
	go func() { serveErr <- srv.Serve(lim) }()
	d.wg.Add(1)
	go d.rotateLoop()

	select {
	case <-runCtx.Done():
	case err := <-serveErr:
		cancel(err)
	}
	d.mu.Lock()
	stopVMs := d.stopVMs
	d.mu.Unlock()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = srv.Shutdown(sctx)
	scancel()
	d.wg.Wait()
	d.log.Info("mb daemon stopped; VMs keep running under their vmhosts", "stopped_vms", stopVMs)
	if err := context.Cause(runCtx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, errStopRequested) {
		return err
	}
	return nil
}

var errStopRequested = errors.New("stop requested")

// requestStop ends Run, stopping the VMs first when stopVMs (while the
// daemon still watches them, so it sees each one go down).
func (d *Daemon) requestStop(stopVMs bool) {
	d.mu.Lock()
	d.stopVMs = d.stopVMs || stopVMs
	d.mu.Unlock()
	if stopVMs {
		d.stopAll()
	}
	d.shutdown(errStopRequested)
}

// stopAll stops every running VM gracefully, in parallel.
func (d *Daemon) stopAll() {
	var wg sync.WaitGroup
	for _, v := range d.list() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if _, err := d.stopVM(ctx, v, 0, false); err != nil {
				d.log.Warn("stop VM at daemon exit", "vm", v.name, "err", err)
			}
		}()
	}
	wg.Wait()
}

// list returns the VMs sorted by name.
func (d *Daemon) list() []*vm {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*vm, 0, len(d.vms))
	for _, v := range d.vms {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// lookup returns the named VM or nil.
func (d *Daemon) lookup(name string) *vm {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.vms[name]
}

// rotateLoop caps the vmhost logs, which the vmhosts write themselves.
func (d *Daemon) rotateLoop() {
	defer d.wg.Done()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
			for _, v := range d.list() {
				rotateVMHostLog(v.dir)
			}
		}
	}
}

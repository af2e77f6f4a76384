// Package service assembles one running monitor: the engine (package
// monitor) with its SQLite store, rollups and message journal, the
// notification router and dispatcher with a durable outbox, the REST API
// under /api/0/ and the Prometheus exposition at /metrics, and the TCP
// listener of monitor.yaml's listen key.
//
// mb daemon hosts one Service and mounts its Handler on mb.sock; `mb
// monitor serve` runs one alone. A Service is built by New, runs until its
// context ends in Run, takes a new configuration with Reload (a bad one is
// refused and the old one stays in force) and releases its files in Close.
package service

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/monitor"
	"github.com/mbvm/mb/monitor/auth"
	"github.com/mbvm/mb/monitor/config"
	"github.com/mbvm/mb/monitor/fleet"
	"github.com/mbvm/mb/monitor/journal"
	"github.com/mbvm/mb/monitor/notify"
	"github.com/mbvm/mb/monitor/store"
)

// Defaults of Options.
const (
	// DefaultTick is how often the engine's time-driven checks run.
	DefaultTick = time.Second
	// DefaultFlush is how often finished minutes of sample rollups are
	// written to the store (each minute is written once; checking more
	// often keeps fewer minutes in memory).
	DefaultFlush = 10 * time.Second
	// DefaultOutboxKeep is how long sent and failed notifications stay
	// in the outbox for the API before they are pruned.
	DefaultOutboxKeep = 7 * 24 * time.Hour
	// StateDirName is the state directory under $MB_HOME.
	StateDirName = "monitor"
	// DBFile and JournalDir are the database and the default journal
	// directory inside the state directory.
	DBFile     = "monitor.db"
	JournalDir = "journal"
)

// Options configure a Service.
type Options struct {
	// Config is the parsed configuration; when nil, ConfigPath is loaded
	// (LoadConfig). One of them is needed.
	Config     *config.Config
	ConfigPath string
	// MissingOK runs with the defaults when ConfigPath does not exist (the
	// daemon without a monitor.yaml); a later Reload reads the file once
	// it is there.
	MissingOK bool
	// StateDir holds monitor.db and, unless journal_dir says otherwise,
	// journal/. Default: $MB_HOME/monitor.
	StateDir string
	// Logger receives the service's log (default slog.Default()).
	Logger *slog.Logger
	// Clock returns the current time (default time.Now).
	Clock func() time.Time
	// Tick is the period of the engine's Tick (default DefaultTick).
	Tick time.Duration
	// Flush is the period of rollup writes (default DefaultFlush).
	Flush time.Duration
	// Backoff and DropAfter tune notification retries (zero: notify's
	// defaults: 5 s doubling to 10 min, dropped after 24 h).
	Backoff   notify.Backoff
	DropAfter time.Duration
	// Poll is how often the outbox is checked without a kick (default
	// notify.DefaultPoll).
	Poll time.Duration
	// AgentDir holds the mb-agent binaries /download serves (default: the
	// running executable's directory).
	AgentDir string
}

// Service is one assembled monitor. Its methods are safe for concurrent
// use.
type Service struct {
	log      *slog.Logger
	clock    func() time.Time
	opts     Options
	stateDir string
	localWho string

	store    *store.Store
	rollups  *store.Rollups
	journal  *recorder
	engine   *monitor.Engine
	outbox   *outbox
	router   *notify.Router
	disp     *notify.Dispatcher
	metrics  *metrics
	handler  http.Handler
	verifier *auth.Verifier
	fleet    *fleet.Fleet
	site     *site      // the dashboard (sessions, pages, live feed)
	cfgMu    sync.Mutex // serialises replacements of monitor.yaml

	cur      atomic.Pointer[loaded]
	reloadMu sync.Mutex

	lnMu     sync.Mutex
	listener *listener // nil when listen is not set
	running  context.Context

	closeOnce sync.Once
	closeErr  error
}

// New assembles a monitor: it opens the store and the journal, restores
// the engine's state, and binds the TCP listener when listen is set (a
// non-loopback address without users is refused). Nothing runs until Run.
func New(ctx context.Context, opts Options) (*Service, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Tick <= 0 {
		opts.Tick = DefaultTick
	}
	if opts.Flush <= 0 {
		opts.Flush = DefaultFlush
	}
	cfg := opts.Config
	if cfg == nil {
		if opts.ConfigPath == "" {
			return nil, errors.New("monitor: no configuration: give Options.Config or Options.ConfigPath")
		}
		var err error
		if _, serr := os.Stat(opts.ConfigPath); opts.MissingOK && errors.Is(serr, fs.ErrNotExist) {
			if cfg, err = ParseConfig(nil, opts.ConfigPath); err != nil {
				return nil, err
			}
		} else if cfg, err = LoadConfig(opts.ConfigPath); err != nil {
			return nil, err
		}
	}
	ld, err := prepare(cfg)
	if err != nil {
		return nil, err
	}
	for _, w := range cfg.Warnings {
		opts.Logger.Warn("monitor config: " + w)
	}
	if opts.StateDir == "" {
		home, err := layout.Dir()
		if err != nil {
			return nil, fmt.Errorf("monitor: state directory: %w", err)
		}
		opts.StateDir = filepath.Join(home, StateDirName)
	}
	s := &Service{log: opts.Logger, clock: opts.Clock, opts: opts, stateDir: opts.StateDir, localWho: localUser(), verifier: auth.NewVerifier(2)}
	ok := false
	defer func() {
		if !ok {
			s.closeFiles()
		}
	}()

	if s.store, err = store.Open(ctx, filepath.Join(opts.StateDir, DBFile)); err != nil {
		return nil, err
	}
	s.rollups = s.store.NewRollups()
	var jw *journal.Writer
	if cfg.Journal.Enabled {
		dir := cfg.Journal.Dir
		if dir == "" {
			dir = filepath.Join(opts.StateDir, JournalDir)
		}
		jw, err = journal.Open(journal.Options{Dir: dir, File: cfg.Journal.File, MaxSize: cfg.Journal.MaxSize, MaxBackups: cfg.Journal.MaxBackups})
		if err != nil {
			return nil, fmt.Errorf("monitor: journal: %w", err)
		}
	}
	s.journal = newRecorder(jw, s.log)

	s.outbox = &outbox{st: s.store, clock: s.clock}
	s.disp, err = notify.NewDispatcher(notify.DispatcherConfig{
		Outbox: s.outbox, Channels: ld.channels, Logger: s.log,
		DropAfter: opts.DropAfter, Backoff: opts.Backoff, Poll: opts.Poll, Now: s.clock,
		OnOutcome: s.outcome,
	})
	if err != nil {
		return nil, err
	}
	s.router, err = notify.NewRouter(notify.RouterConfig{
		Channels: ld.channels, Users: ld.users, Outbox: s.outbox, Log: s.outbox,
		Logger: s.log, Kick: s.disp.Kick,
	})
	if err != nil {
		return nil, err
	}
	s.engine, err = monitor.New(monitor.Options{
		Settings: ld.settings, Clock: s.clock, Notifier: monitor.NotifierFunc(s.notify),
		Store: s.store, Samples: s.rollups, Journal: s.journal, Logger: s.log,
	})
	if err != nil {
		return nil, err
	}
	if err := s.engine.Load(ctx); err != nil {
		return nil, fmt.Errorf("monitor: restoring state from %s: %w", s.store.Path(), err)
	}
	if s.fleet, err = fleet.New(fleet.FromConfig(cfg), fleet.Options{Engine: s.engine, Logger: s.log, Clock: s.clock, AgentDir: opts.AgentDir}); err != nil {
		return nil, err
	}
	s.cur.Store(ld)
	s.metrics = newMetrics(s)
	if s.site, err = newSite(s); err != nil {
		return nil, err
	}
	s.journal.setTap(s.site.tap)
	s.handler = s.audited(s.routes())
	if cfg.Listen != "" {
		if s.listener, err = s.listen(cfg); err != nil {
			return nil, err
		}
	}
	ok = true
	return s, nil
}

// Engine returns the monitor engine, for sources to push observations into.
func (s *Service) Engine() *monitor.Engine { return s.engine }

// Store returns the monitor's database.
func (s *Service) Store() *store.Store { return s.store }

// Config returns the configuration in force.
func (s *Service) Config() *config.Config { return s.cur.Load().cfg }

// Handler serves the REST API under /api/0/ and the Prometheus exposition
// at /metrics, without authentication: the caller is trusted (mb.sock
// checks its peer's uid). Use WithUser to name the caller for
// acknowledgements and silences; without it they are recorded as the
// user the process runs as. The TCP listener wraps it with the users'
// HTTP Basic authentication.
func (s *Service) Handler() http.Handler { return s.handler }

// Addr is the TCP listener's address, or nil when listen is not set.
func (s *Service) Addr() net.Addr {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if s.listener == nil {
		return nil
	}
	return s.listener.ln.Addr()
}

// Run runs the monitor until ctx ends: the engine's Tick loop, the
// notification dispatcher, rollup flushes and pruning, and the TCP
// listener when listen is set. It returns nil once ctx has ended and
// everything has stopped.
func (s *Service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	s.lnMu.Lock()
	s.running = ctx
	if s.listener != nil {
		s.listener.serve(ctx, &wg)
	}
	s.lnMu.Unlock()

	wg.Add(4)
	go func() {
		defer wg.Done()
		_ = s.disp.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		s.fleet.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		s.site.hub.run(ctx)
	}()
	go func() {
		defer wg.Done()
		s.housekeeping(ctx)
	}()
	tick := time.NewTicker(s.opts.Tick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			s.lnMu.Lock()
			s.running = nil
			if s.listener != nil {
				s.listener.shutdown()
			}
			s.lnMu.Unlock()
			wg.Wait()
			return nil
		case <-tick.C:
			if err := s.engine.Tick(ctx, s.clock()); err != nil && ctx.Err() == nil {
				s.log.Error("monitor: tick", "err", err)
			}
			s.journal.flush()
		}
	}
}

// flushSettle is how long after a minute's end its rollups are written:
// samples stamped in it may still arrive (a poll that took a while).
const flushSettle = 10 * time.Second

// housekeeping flushes rollups and prunes old rows until ctx ends, then
// flushes once more.
func (s *Service) housekeeping(ctx context.Context) {
	flush := time.NewTicker(s.opts.Flush)
	defer flush.Stop()
	prune := time.NewTicker(time.Hour)
	defer prune.Stop()
	s.prune(ctx)
	for {
		select {
		case <-ctx.Done():
			if err := s.rollups.Flush(context.WithoutCancel(ctx)); err != nil {
				s.log.Error("monitor: writing rollups", "err", err)
			}
			return
		case <-flush.C:
			// Minutes that are over (allowing reports that arrive a little
			// late) are written once each; the minute in progress stays in
			// memory.
			if err := s.rollups.FlushBefore(ctx, s.clock().Add(-flushSettle)); err != nil && ctx.Err() == nil {
				s.log.Error("monitor: writing rollups", "err", err)
			}
		case <-prune.C:
			s.prune(ctx)
		}
	}
}

func (s *Service) prune(ctx context.Context) {
	now := s.clock()
	cfg := s.cur.Load().cfg
	if _, err := s.store.PruneRollups(ctx, now, cfg.RollupMinuteRetention, cfg.RollupRetention); err != nil && ctx.Err() == nil {
		s.log.Error("monitor: pruning rollups", "err", err)
	}
	if _, err := s.store.PruneOutbox(ctx, now.Add(-DefaultOutboxKeep)); err != nil && ctx.Err() == nil {
		s.log.Error("monitor: pruning the outbox", "err", err)
	}
}

// notify hands an engine notification to the router, which writes one
// outbox row per channel before anything is sent.
func (s *Service) notify(ctx context.Context, n monitor.Notification) {
	// The notification must reach the outbox even when the caller's
	// request has gone away.
	ctx = context.WithoutCancel(ctx)
	to, err := s.router.Deliver(ctx, toMessage(n))
	if err != nil {
		s.log.Error("monitor: queueing a notification", "host", n.Host, "plugin", n.Plugin, "field", n.Field, "err", err)
		return
	}
	if len(to) == 0 {
		s.log.Info("monitor: notification goes to no channel", "host", n.Host, "plugin", n.Plugin, "field", n.Field, "level", n.Level)
	}
}

// outcome journals what happened to one delivery attempt.
func (s *Service) outcome(it notify.Item, o notify.Outcome, err error) {
	msg := map[string]any{
		"ID": "DELIVERY", "notification": it.Message.ID, "channel": it.Channel,
		"name": it.Message.Host, "plugin": it.Message.Plugin, "field": it.Message.Field,
		"level": string(it.Message.Level), "outcome": string(o), "attempts": it.Attempts,
	}
	if o == notify.OutcomeSent {
		msg["attempts"] = it.Attempts + 1
	}
	if err != nil {
		msg["error"] = err.Error()
	}
	_ = s.journal.Record(s.clock(), "", msg)
}

// Reload reads the configuration at path (the one New was given when path
// is empty) and puts it in force. A file that does not parse, refers to
// something undefined, or asks for a non-loopback listen without users is
// refused, and the configuration in force stays.
func (s *Service) Reload(path string) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if path == "" {
		path = s.cur.Load().cfg.Path
	}
	if path == "" {
		return errors.New("monitor reload: the configuration was not read from a file; give one")
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		return fmt.Errorf("monitor reload refused, the old configuration stays in force: %w", err)
	}
	return s.apply(cfg)
}

// ReloadConfig is Reload with a configuration already parsed.
func (s *Service) ReloadConfig(cfg *config.Config) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	return s.apply(cfg)
}

func (s *Service) apply(cfg *config.Config) error {
	ld, err := prepare(cfg)
	if err != nil {
		return fmt.Errorf("monitor reload refused, the old configuration stays in force: %w", err)
	}
	old := s.cur.Load()
	// Bind a new listener before anything changes, so that a port in use
	// refuses the whole reload.
	var nl *listener
	if cfg.Listen != old.cfg.Listen && cfg.Listen != "" {
		if nl, err = s.listen(cfg); err != nil {
			return fmt.Errorf("monitor reload refused, the old configuration stays in force: %w", err)
		}
	}
	if err := s.fleet.Reload(fleet.FromConfig(cfg)); err != nil {
		if nl != nil {
			nl.ln.Close()
		}
		return fmt.Errorf("monitor reload refused, the old configuration stays in force: %w", err)
	}
	if err := s.engine.Reload(ld.settings); err != nil {
		if nl != nil {
			nl.ln.Close()
		}
		return fmt.Errorf("monitor reload refused, the old configuration stays in force: %w", err)
	}
	if err := s.router.Update(ld.channels, ld.users); err != nil {
		// prepare checked the same thing; keep the engine consistent anyway.
		_ = s.engine.Reload(old.settings)
		if nl != nil {
			nl.ln.Close()
		}
		return fmt.Errorf("monitor reload refused, the old configuration stays in force: %w", err)
	}
	s.disp.SetChannels(ld.channels)
	s.cur.Store(ld)
	s.endChangedSessions(old.cfg, cfg)
	if cfg.Listen != old.cfg.Listen {
		s.lnMu.Lock()
		prev := s.listener
		s.listener = nl
		if nl != nil && s.running != nil {
			nl.serve(s.running, nil)
		}
		s.lnMu.Unlock()
		if prev != nil {
			prev.shutdown()
		}
	}
	for _, w := range cfg.Warnings {
		s.log.Warn("monitor config: " + w)
	}
	s.log.Info("monitor configuration reloaded", "path", cfg.Path, "channels", len(ld.channels), "users", len(cfg.Users))
	return nil
}

// Close stops the TCP listener and closes the journal and the store
// (after a last rollup flush). Call it after Run has returned.
func (s *Service) Close() error {
	s.closeOnce.Do(func() {
		s.lnMu.Lock()
		if s.listener != nil {
			s.listener.shutdown()
			s.listener = nil
		}
		s.lnMu.Unlock()
		if s.rollups != nil {
			if err := s.rollups.Flush(context.Background()); err != nil {
				s.log.Error("monitor: writing rollups", "err", err)
			}
		}
		s.closeErr = s.closeFiles()
	})
	return s.closeErr
}

func (s *Service) closeFiles() error {
	var errs []error
	if s.fleet != nil {
		errs = append(errs, s.fleet.Close())
	}
	if s.journal != nil {
		errs = append(errs, s.journal.Close())
	}
	if s.store != nil {
		errs = append(errs, s.store.Close())
	}
	if s.listener != nil {
		s.listener.ln.Close()
	}
	return errors.Join(errs...)
}

// localUser is the name of the user the process runs as: who made an
// acknowledgement or silence over mb.sock, whose peer is that same user.
func localUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "local"
}

package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mbvm/mb/monitor"
	"github.com/mbvm/mb/monitor/config"
)

// MonitorConfigName is the daemon's monitor configuration in $MB_HOME. It
// is optional: without it the monitor runs with the defaults and no
// notification channels.
const MonitorConfigName = "monitor.yaml"

// monitorTick is how often the engine's time-driven checks run.
const monitorTick = time.Second

// monitorHost is the monitor the daemon hosts, fed with its VMs.
type monitorHost struct {
	log    *slog.Logger
	path   string
	eng    *monitor.Engine
	feeder *vmFeeder
}

// loadMonitorConfig reads path, or returns the defaults when it does not
// exist.
func loadMonitorConfig(path string) (*config.Config, error) {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return config.Parse(nil, path, config.Options{})
	}
	return config.Load(path, config.Options{})
}

// openMonitor makes the daemon's monitor from $MB_HOME/monitor.yaml. A
// configuration that does not load is logged and the defaults are used,
// so that a typo in it never keeps the daemon from managing VMs; a reload
// puts the fixed file in force.
func (d *Daemon) openMonitor() (*monitorHost, error) {
	path := filepath.Join(d.cfg.Home, MonitorConfigName)
	log := d.log.With("component", "monitor")
	cfg, err := loadMonitorConfig(path)
	if err != nil {
		log.Error("monitor configuration refused; running with the defaults until it is fixed and reloaded (SIGHUP or `mb monitor reload`)", "err", err)
		if cfg, err = config.Parse(nil, path, config.Options{}); err != nil {
			return nil, err
		}
	}
	eng, err := monitor.New(monitor.Options{Settings: cfg.Settings(), Logger: log})
	if err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	return &monitorHost{log: log, path: path, eng: eng, feeder: newVMFeeder(d, eng, cfg.MetricsInterval, log)}, nil
}

// run runs the monitor and its VM feeder until ctx ends; SIGHUP reloads
// the configuration.
func (m *monitorHost) run(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.feeder.run(ctx)
	}()
	defer func() { <-done }()
	t := time.NewTicker(monitorTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := m.reload(); err != nil {
				m.log.Error("monitor reload refused; the configuration in force stays", "err", err)
			}
		case now := <-t.C:
			if err := m.eng.Tick(ctx, now); err != nil && ctx.Err() == nil {
				m.log.Warn("monitor tick", "err", err)
			}
		}
	}
}

// reload reads monitor.yaml again and puts it in force; a bad file is
// refused and the configuration in force stays.
func (m *monitorHost) reload() error {
	cfg, err := loadMonitorConfig(m.path)
	if err != nil {
		return err
	}
	if err := m.eng.Reload(cfg.Settings()); err != nil {
		return err
	}
	m.feeder.setInterval(cfg.MetricsInterval)
	m.log.Info("monitor configuration reloaded", "path", m.path, "metrics_interval", cfg.MetricsInterval)
	return nil
}

package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/monitor"
	"github.com/mbvm/mb/monitor/config"
	"github.com/mbvm/mb/monitor/service"
)

// MonitorConfigName is the daemon's monitor configuration in $MB_HOME. It
// is optional: without it the monitor runs with the defaults and no
// notification channels.
const MonitorConfigName = "monitor.yaml"

// monitorHost is the monitor the daemon hosts (one monitor/service), fed
// with the daemon's VMs.
type monitorHost struct {
	log    *slog.Logger
	path   string
	svc    *service.Service
	eng    *monitor.Engine
	feeder *vmFeeder
}

// loadMonitorConfig reads path, or returns the defaults when it does not
// exist.
func loadMonitorConfig(path string) (*config.Config, error) {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return service.ParseConfig(nil, path)
	}
	return service.LoadConfig(path)
}

// openMonitor makes the daemon's monitor from $MB_HOME/monitor.yaml, with
// its state in $MB_HOME/monitor. A configuration that does not load is
// logged and the defaults are used, so that a typo in it never keeps the
// daemon from managing VMs; a reload puts the fixed file in force.
func (d *Daemon) openMonitor(ctx context.Context) (*monitorHost, error) {
	path := filepath.Join(d.cfg.Home, MonitorConfigName)
	log := d.log.With("component", "monitor")
	cfg, err := loadMonitorConfig(path)
	if err != nil {
		log.Error("monitor configuration refused; running with the defaults until it is fixed and reloaded (SIGHUP or `mb monitor reload`)", "err", err)
		if cfg, err = service.ParseConfig(nil, path); err != nil {
			return nil, err
		}
	}
	svc, err := service.New(ctx, service.Options{Config: cfg, StateDir: filepath.Join(d.cfg.Home, service.StateDirName), Logger: log})
	if err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	m := &monitorHost{log: log, path: path, svc: svc, eng: svc.Engine()}
	svc.SetVMControl(dashboardVMs{d})
	m.feeder = newVMFeeder(d, m.eng, func() time.Duration { return svc.Config().MetricsInterval }, log)
	return m, nil
}

// run runs the monitor and its VM feeder until ctx ends, then closes the
// monitor; SIGHUP reloads the configuration.
func (m *monitorHost) run(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	done := make(chan struct{}, 2)
	go func() {
		defer func() { done <- struct{}{} }()
		m.feeder.run(ctx)
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		if err := m.svc.Run(ctx); err != nil {
			m.log.Error("monitor stopped", "err", err)
		}
	}()
	defer func() {
		<-done
		<-done
		if err := m.svc.Close(); err != nil {
			m.log.Warn("monitor: close", "err", err)
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := m.reload(); err != nil {
				m.log.Error("monitor reload refused; the configuration in force stays", "err", err)
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
	if err := m.svc.ReloadConfig(cfg); err != nil {
		return err
	}
	m.log.Info("monitor configuration reloaded", "path", m.path, "metrics_interval", cfg.MetricsInterval)
	return nil
}

// monitorHandler serves the monitor's REST API (/api/0/) and Prometheus
// exposition (/metrics) on the daemon's socket; 503 while the monitor is
// not running.
func (d *Daemon) monitorHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		mon := d.mon
		d.mu.Unlock()
		if mon == nil {
			writeError(w, errorc(http.StatusServiceUnavailable, api.CodeBusy, "the monitor is not running: see the daemon's log"))
			return
		}
		mon.svc.Handler().ServeHTTP(w, r)
	})
}

package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/mbvm/mb/monitor/service"
)

func (a *app) monitorServeCmd() *cobra.Command {
	var cfgPath, stateDir string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "serve -c FILE",
		Short: "Run a monitor alone in the foreground (a fleet server that runs no VMs)",
		Long: `serve runs the monitor without the mb daemon, with the configuration FILE
(mode 0600). Its state (monitor.db and journal/) goes in the directory
monitor/ next to FILE, or --state DIR. Set listen: in FILE to serve the API
and /metrics on TCP. SIGHUP reloads FILE (a bad one is refused and the old
one stays); SIGTERM and SIGINT stop it cleanly.`,
		Example: `  mb monitor serve -c /etc/mb/monitor.yaml
  mb monitor serve -c ./monitor.yaml --state /var/lib/mb-monitor`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cfgPath == "" {
				return usagef("give the configuration file with -c FILE")
			}
			abs, err := filepath.Abs(cfgPath)
			if err != nil {
				return err
			}
			if stateDir == "" {
				stateDir = filepath.Join(filepath.Dir(abs), service.StateDirName)
			}
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
			ctx := cmd.Context()
			s, err := service.New(ctx, service.Options{ConfigPath: abs, StateDir: stateDir, Logger: log})
			if err != nil {
				return err
			}
			if addr := s.Addr(); addr != nil {
				log.Info("monitor serving /api/0/ and /metrics", "addr", addr.String(), "state", stateDir)
			} else {
				log.Warn("no listen: in the configuration: the API and /metrics are not served", "config", abs)
			}
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			runCtx, stop := context.WithCancel(ctx)
			defer stop()
			done := make(chan error, 1)
			go func() { done <- s.Run(runCtx) }()
			for {
				select {
				case <-hup:
					if err := s.Reload(""); err != nil {
						log.Error("reload refused", "err", err)
					}
				case err := <-done:
					cerr := s.Close()
					if err != nil {
						return err
					}
					if cerr != nil {
						return fmt.Errorf("closing the monitor: %w", cerr)
					}
					log.Info("monitor stopped")
					return nil
				}
			}
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "the monitor.yaml to run (required)")
	cmd.Flags().StringVar(&stateDir, "state", "", "state directory (default: monitor/ next to the config)")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "log debug messages")
	return cmd
}

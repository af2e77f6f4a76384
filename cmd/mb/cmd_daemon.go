package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mbvm/mb/daemon"
	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/internal/lockfile"
	"github.com/mbvm/mb/internal/logfile"
)

func (a *app) daemonCmd() *cobra.Command {
	var foreground, verbose bool
	var logFile string
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run the mb daemon (started automatically by other commands)",
		Long: `Runs the per-user mb daemon, which supervises the VMs under $MB_HOME.

Without --foreground it starts the daemon in the background and returns.
Other mb commands start it on demand, so this is mostly for services
(mb service install runs "mb daemon --foreground") and for debugging.
Stopping the daemon never stops a VM.`,
		Example: `  mb daemon                  # start it in the background
  mb daemon --foreground     # run it here, logging to stderr
  mb daemon status
  mb daemon stop [--stop-vms]`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if foreground {
				return runDaemon(cmd.Context(), logFile, verbose, a.stderr)
			}
			h, err := mbHome()
			if err != nil {
				return err
			}
			if held, pid := daemonLocked(h); held {
				fmt.Fprintf(a.stdout, "mb daemon is already running (PID %d)\n", pid)
				return nil
			}
			c, err := connect(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer c.Close()
			st, err := c.Ping(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "mb daemon started (PID %d), socket %s, log %s\n", st.PID, st.Socket, filepath.Join(h, daemon.LogName))
			return nil
		},
	}
	cmd.Flags().BoolVar(&foreground, "foreground", false, "run in the foreground, logging to stderr")
	cmd.Flags().StringVar(&logFile, "log-file", "", "log to this file (size-capped and rotated) instead of stderr")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "debug logging")
	_ = cmd.Flags().MarkHidden("log-file")
	cmd.AddCommand(a.daemonStopCmd(), a.daemonStatusCmd())
	return cmd
}

// runDaemon runs the daemon in this process until SIGTERM/SIGINT or a stop
// request.
func runDaemon(ctx context.Context, logFile string, verbose bool, stderr io.Writer) error {
	h, err := mbHome()
	if err != nil {
		return err
	}
	var out io.Writer = stderr
	if logFile != "" {
		w, err := logfile.Open(logFile, 0, 0)
		if err != nil {
			return err
		}
		defer w.Close()
		out = w
	}
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))
	// However it was started, the daemon keeps only the variables of
	// daemon.KeptEnv: the caller's shell must not decide how VMs run.
	kept := daemon.CleanEnv(os.Environ())
	os.Clearenv()
	for _, kv := range kept {
		k, v, _ := strings.Cut(kv, "=")
		_ = os.Setenv(k, v)
	}
	_ = os.Setenv(layout.Env, h)
	log.Info("daemon environment", "env", strings.Join(daemon.CleanEnv(os.Environ()), " "))
	vmhostBin, err := daemon.FindVMHost()
	if err != nil {
		log.Warn("VMs cannot start until vmhost is installed", "err", err)
	}
	d := daemon.New(daemon.Config{Home: h, VMHost: vmhostBin, Version: version, Logger: log})
	if err := d.Run(ctx); err != nil {
		log.Error("mb daemon failed", "err", err)
		if errors.Is(err, daemon.ErrAlreadyRunning) {
			return err
		}
		return fmt.Errorf("mb daemon: %w", err)
	}
	return nil
}

// daemonLocked reports whether a daemon holds the lock in h, and its PID.
func daemonLocked(h string) (bool, int) {
	held, pid, err := lockfile.Probe(filepath.Join(h, daemon.LockName))
	return err == nil && held, pid
}

func (a *app) daemonStopCmd() *cobra.Command {
	var stopVMs bool
	cmd := &cobra.Command{
		Use:   "stop",
		Short: "Stop the mb daemon; VMs keep running unless --stop-vms",
		Example: `  mb daemon stop
  mb daemon stop --stop-vms   # stop every VM first`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := mbHome()
			if err != nil {
				return err
			}
			held, pid := daemonLocked(h)
			if !held {
				fmt.Fprintln(a.stdout, "mb daemon is not running")
				return nil
			}
			c, err := connect(cmd.Context(), false)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.StopDaemon(cmd.Context(), stopVMs); err != nil {
				return err
			}
			// Wait until the daemon has let go of its lock.
			deadline := time.Now().Add(3 * time.Minute)
			for time.Now().Before(deadline) {
				if held, _ := daemonLocked(h); !held {
					fmt.Fprintf(a.stdout, "mb daemon stopped (PID %d)\n", pid)
					return nil
				}
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-time.After(100 * time.Millisecond):
				}
			}
			return fmt.Errorf("mb daemon (PID %d) did not exit within 3 minutes: see %s", pid, filepath.Join(h, daemon.LogName))
		},
	}
	cmd.Flags().BoolVar(&stopVMs, "stop-vms", false, "stop every running VM before the daemon exits")
	return cmd
}

func (a *app) daemonStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "status",
		Short:   "Say whether the mb daemon runs",
		Example: `  mb daemon status`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := mbHome()
			if err != nil {
				return err
			}
			if held, _ := daemonLocked(h); !held {
				fmt.Fprintf(a.stdout, "mb daemon is not running (MB_HOME %s)\n", h)
				return &exitError{code: 1}
			}
			c, err := connect(cmd.Context(), false)
			if err != nil {
				return err
			}
			defer c.Close()
			st, err := c.Ping(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "mb daemon %s is running: PID %d, up %s, %d VMs (%d running)\n  socket %s\n  log    %s\n  qemu   %s\n",
				st.Version, st.PID, time.Since(st.StartedAt).Round(time.Second), st.VMs, st.Running, st.Socket, filepath.Join(h, daemon.LogName), orDash(st.QEMU))
			fmt.Fprintf(a.stdout, "  environment (kept: %s, %s*):\n", strings.Join(daemon.KeptEnv, " "), daemon.KeptEnvPrefix)
			for _, kv := range st.Env {
				fmt.Fprintf(a.stdout, "    %s\n", kv)
			}
			return nil
		},
	}
}

// lastLogLine returns the last non-empty line of a log file.
func lastLogLine(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "no log"
	}
	lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
	return string(lines[len(lines)-1])
}

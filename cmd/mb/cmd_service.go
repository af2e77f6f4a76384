package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/mbvm/mb/daemon"
	"github.com/mbvm/mb/daemon/service"
	"github.com/mbvm/mb/internal/layout"
)

func (a *app) serviceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "service install|uninstall|status",
		Short: "Run the mb daemon as a user service (systemd on Linux, launchd on macOS)",
		Long: `Installs a systemd user unit (Linux) or a launchd agent (macOS) that runs
"mb daemon --foreground" and restarts it when it fails, so VMs with restart
policy always come back after a reboot. Stopping the service never kills the
VMs (KillMode=process; AbandonProcessGroup on macOS).`,
		Example: `  mb service install
  mb service status
  mb service uninstall`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_ = cmd.Help()
			return usagef("mb service needs a subcommand: install, uninstall or status")
		},
	}
	var noLoad bool
	manager := func() (*service.Manager, error) {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the mb executable: %w", err)
		}
		if r, err := filepath.EvalSymlinks(exe); err == nil {
			exe = r
		}
		userHome, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("find the home directory: %w", err)
		}
		h, err := mbHome()
		if err != nil {
			return nil, err
		}
		p := service.Params{MB: exe, Path: service.DefaultPath()}
		if os.Getenv(layout.Env) != "" {
			p.Home = h
		}
		if runtime.GOOS == "darwin" {
			p.DaemonLog = filepath.Join(h, daemon.LogName)
			p.LogFile = filepath.Join(h, "launchd.log")
		}
		return &service.Manager{Params: p, UserHome: userHome, Load: !noLoad}, nil
	}
	install := &cobra.Command{
		Use:   "install",
		Short: "Write and load the user service",
		Example: `  mb service install
  mb service install --no-load   # only write the file`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := manager()
			if err != nil {
				return err
			}
			if m.Load {
				// A daemon started on demand holds the lock; the service's
				// daemon takes over (the VMs keep running).
				if h, err := mbHome(); err == nil {
					if held, _ := daemonLocked(h); held {
						if c, err := connect(cmd.Context(), false); err == nil {
							_ = c.StopDaemon(cmd.Context(), false)
							c.Close()
						}
					}
				}
			}
			err = m.Install(cmd.Context())
			fmt.Fprintf(a.stdout, "wrote %s\n", m.Path())
			if hint := service.LingerHint(); hint != "" {
				fmt.Fprintf(a.stdout, "note: %s\n", hint)
			}
			if err != nil {
				return fmt.Errorf("the service file is written but could not be loaded: %w (run this in a login session, or start the daemon with `mb daemon`)", err)
			}
			if m.Load {
				fmt.Fprintln(a.stdout, "loaded and started the service")
			} else {
				fmt.Fprintln(a.stdout, "not loaded (--no-load)")
			}
			fmt.Fprintln(a.stdout, "inspect it with:")
			for _, l := range m.Inspect() {
				fmt.Fprintf(a.stdout, "  %s\n", l)
			}
			return nil
		},
	}
	install.Flags().BoolVar(&noLoad, "no-load", false, "only write the file; do not run systemctl or launchctl")
	uninstall := &cobra.Command{
		Use:     "uninstall",
		Short:   "Stop and remove the user service (VMs keep running)",
		Example: `  mb service uninstall`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := manager()
			if err != nil {
				return err
			}
			err = m.Uninstall(cmd.Context())
			fmt.Fprintf(a.stdout, "removed %s\n", m.Path())
			if err != nil {
				return fmt.Errorf("the service file is removed but unloading failed: %w", err)
			}
			return nil
		},
	}
	uninstall.Flags().BoolVar(&noLoad, "no-load", false, "only remove the file; do not run systemctl or launchctl")
	status := &cobra.Command{
		Use:     "status",
		Short:   "Say whether the user service is installed and running",
		Example: `  mb service status`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := manager()
			if err != nil {
				return err
			}
			installed, state := m.Status(cmd.Context())
			fmt.Fprintf(a.stdout, "%s: %s\n", m.Path(), state)
			if !installed {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.AddCommand(install, uninstall, status)
	return cmd
}

package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/monitor/service"
)

func (a *app) monitorOpenCmd() *cobra.Command {
	var cfgPath string
	var noBrowser bool
	cmd := &cobra.Command{
		Use:   "open",
		Short: "Print the dashboard's address, and open it in a browser when there is one",
		Long: `open prints the address of the monitor's dashboard (monitor.yaml's listen,
$MB_HOME/monitor.yaml unless -c FILE is given) and, on a desktop session,
opens it with xdg-open.`,
		Example: `  mb monitor open
  mb monitor open -c /etc/mb/monitor.yaml --no-browser`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cfgPath == "" {
				home, err := layout.Dir()
				if err != nil {
					return err
				}
				cfgPath = filepath.Join(home, "monitor.yaml")
			}
			cfg, err := service.LoadConfig(cfgPath)
			if err != nil {
				return err
			}
			u, err := dashboardURL(cfg.Listen, cfg.TLSCert != "" || cfg.TLSSelfSigned)
			if err != nil {
				return fmt.Errorf("%s: %w", cfgPath, err)
			}
			fmt.Fprintln(a.stdout, u)
			if noBrowser || (os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "") {
				return nil
			}
			if p, err := exec.LookPath("xdg-open"); err == nil {
				ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
				defer cancel()
				_ = exec.CommandContext(ctx, p, u).Start()
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "the monitor's configuration (default $MB_HOME/monitor.yaml)")
	cmd.Flags().BoolVar(&noBrowser, "no-browser", false, "only print the address")
	return cmd
}

// dashboardURL is the address a browser on this machine uses for a listen
// address: a wildcard host becomes 127.0.0.1; https when TLS is on.
func dashboardURL(listen string, tls bool) (string, error) {
	if listen == "" {
		return "", fmt.Errorf("the dashboard needs listen: set it, for example listen: 127.0.0.1:50004, and reload the monitor")
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("listen %q: %w", listen, err)
	}
	if port == "0" {
		return "", fmt.Errorf("listen %q has no fixed port: give one, for example 127.0.0.1:50004", listen)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	scheme := "http://"
	if tls {
		scheme = "https://"
	}
	return scheme + net.JoinHostPort(host, port) + "/live", nil
}

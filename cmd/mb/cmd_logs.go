package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/mbvm/mb/daemon/api"
)

func (a *app) logsCmd() *cobra.Command {
	var follow, vmhostLog bool
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print a VM's serial console log (or its vmhost log)",
		Example: `  mb logs demo
  mb logs -f demo          # keep printing as the guest writes
  mb logs --vmhost demo    # the supervisor's log`,
		Args:              nameArgs(1, 1),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			src := "serial"
			if vmhostLog {
				src = "vmhost"
			}
			rc, err := c.Logs(cmd.Context(), args[0], src, follow)
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(a.stdout, rc)
			if err != nil && cmd.Context().Err() != nil {
				return nil // interrupted while following
			}
			return err
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output")
	cmd.Flags().BoolVar(&vmhostLog, "vmhost", false, "print vmhost's log instead of the serial console")
	return cmd
}

func (a *app) eventsCmd() *cobra.Command {
	var follow, asJSON bool
	var only string
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Print the daemon's lifecycle events (starts, stops, crashes, restarts)",
		Example: `  mb events
  mb events -f
  mb events --json --vm demo`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			rc, err := c.Events(cmd.Context(), follow)
			if err != nil {
				return err
			}
			defer rc.Close()
			sc := bufio.NewScanner(rc)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				var e api.Event
				if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
					return fmt.Errorf("bad event from the daemon: %w", err)
				}
				if only != "" && e.VM != only {
					continue
				}
				if asJSON {
					fmt.Fprintln(a.stdout, sc.Text())
					continue
				}
				line := fmt.Sprintf("%s  %-10s %-14s", e.Time.Local().Format(time.DateTime), e.VM, e.Type)
				if e.Level != "" {
					line += "  " + e.Level + ":"
				}
				if e.Reason != "" {
					line += "  " + e.Reason
				}
				if e.Restarts > 0 {
					line += fmt.Sprintf("  (restarts: %d)", e.Restarts)
				}
				fmt.Fprintln(a.stdout, line)
			}
			if err := sc.Err(); err != nil && cmd.Context().Err() == nil {
				return err
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per line")
	cmd.Flags().StringVar(&only, "vm", "", "only this VM's events")
	return cmd
}

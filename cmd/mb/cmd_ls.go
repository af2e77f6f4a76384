package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/internal/safetext"
)

func (a *app) lsCmd() *cobra.Command {
	var asJSON, quiet bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List VMs",
		Long: `Lists VMs with their state, backend, size, SSH port, IP address, guest
agent state and uptime. --json prints an array of objects with snake_case
fields (name, state, reason, exit_code, restarts, ...).`,
		Example: `  mb ls
  mb ls --json | jq '.[] | select(.state == "running") | .name'
  mb ls -q`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			vms, err := c.List(cmd.Context())
			if err != nil {
				return err
			}
			switch {
			case asJSON:
				return writeJSON(a.stdout, vms)
			case quiet:
				for _, v := range vms {
					fmt.Fprintln(a.stdout, v.Name)
				}
				return nil
			}
			return printTable(a.stdout, vms)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the names")
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printTable prints mb ls's table.
func printTable(w io.Writer, vms []api.VM) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tBACKEND\tCPUS\tMEMORY\tSSH\tIP\tAGENT\tUPTIME")
	for _, v := range vms {
		ssh, ip, uptime := "-", "-", "-"
		if v.SSHPort != 0 && v.State == api.StateRunning {
			ssh = fmt.Sprintf("%d", v.SSHPort)
		}
		if len(v.IPs) > 0 {
			ip = v.IPs[0]
		}
		if v.UptimeSeconds > 0 {
			uptime = humanDuration(time.Duration(v.UptimeSeconds * float64(time.Second)))
		}
		state := v.State
		if v.Restarts > 0 {
			state += fmt.Sprintf(" (%d restarts)", v.Restarts)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", v.Name, state, orDash(v.Backend), v.CPUs,
			orDash(v.Memory), ssh, ip, orDash(v.AgentState()), uptime)
	}
	return tw.Flush()
}

// humanDuration prints 45s, 12m, 3h20m, 2d4h.
func humanDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

func (a *app) infoCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "info NAME",
		Short: "Show everything about a VM: state, spec, vmhost details, guest agent",
		Example: `  mb info demo
  mb info demo --json | jq .agent`,
		Args:              nameArgs(1, 1),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.daemonClient(cmd.Context())
			if err != nil {
				return err
			}
			vm, err := c.Inspect(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.stdout, vm)
			}
			printInfo(a.stdout, vm)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// printInfo prints mb info's key: value view.
func printInfo(w io.Writer, vm *api.VM) {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	row := func(k string, v any) {
		// Some values come from the guest (hostname, OS): never let them
		// drive the terminal.
		s := safetext.Clean(fmt.Sprint(v), 0)
		if s == "" || s == "0" || s == "<nil>" {
			return
		}
		fmt.Fprintf(tw, "%s:\t%s\n", k, s)
	}
	row("Name", vm.Name)
	row("State", vm.State)
	row("Reason", vm.Reason)
	if vm.ExitCode != nil {
		fmt.Fprintf(tw, "Exit code:\t%d\n", *vm.ExitCode)
	}
	row("Stopped by", vm.StoppedBy)
	fmt.Fprintf(tw, "Restarts:\t%d\n", vm.Restarts)
	fmt.Fprintf(tw, "Ready:\t%t\n", vm.Ready)
	row("Backend", vm.Backend)
	row("Image", vm.Image)
	row("CPUs", vm.CPUs)
	row("Memory", vm.Memory)
	if vm.SSHPort != 0 {
		row("SSH", fmt.Sprintf("127.0.0.1:%d", vm.SSHPort))
	}
	row("Restart", vm.Restart)
	row("vmhost PID", vm.PID)
	if vm.StartedAt != nil {
		row("Started", vm.StartedAt.Local().Format(time.RFC3339))
		row("Uptime", humanDuration(time.Duration(vm.UptimeSeconds*float64(time.Second))))
	}
	row("Directory", vm.Dir)
	if ag := vm.Agent; ag != nil {
		row("Agent", ag.State)
		row("Agent kind", ag.Kind)
		if ag.LastSeen != nil {
			row("Agent last seen", ag.LastSeen.Local().Format(time.RFC3339))
		}
		if ag.RTTMs > 0 {
			row("Agent RTT", fmt.Sprintf("%.2f ms (avg %.2f ms)", ag.RTTMs, ag.RTTAvgMs))
		}
		row("Hostname", ag.Hostname)
		row("OS", ag.OS)
	}
	if len(vm.IPs) > 0 {
		row("IPs", strings.Join(vm.IPs, ", "))
	}
	printMap(tw, "Details", vm.Details)
	printMap(tw, "Spec", vm.Spec)
	tw.Flush()
}

func printMap(w io.Writer, title string, m map[string]any) {
	if len(m) == 0 {
		return
	}
	fmt.Fprintf(w, "%s:\t\n", title)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := m[k]
		if b, err := json.Marshal(v); err == nil {
			if _, isStr := v.(string); !isStr {
				v = string(b)
			}
		}
		fmt.Fprintf(w, "  %s:\t%s\n", safetext.Clean(k, 0), safetext.Clean(fmt.Sprint(v), 0))
	}
}

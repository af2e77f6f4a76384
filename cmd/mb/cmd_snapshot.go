package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func (a *app) snapshotCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Save, list and remove named snapshots of a VM (memory, device state and disk)",
		Long: `A snapshot holds a running VM's memory, device state and disk at one instant;
the guest is paused only while it is taken. mb start NAME --from SNAP brings
the VM back to that moment; mb clone makes new VMs from it.`,
		Args: noArgs,
	}
	var asJSON bool
	save := &cobra.Command{
		Use:               "save NAME SNAP",
		Short:             "Take snapshot SNAP of the running VM NAME",
		Example:           "  mb snapshot save demo before-upgrade",
		Args:              nameArgs(2, 2),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.daemonClient(ctx)
			if err != nil {
				return err
			}
			s, err := c.SaveSnapshot(ctx, args[0], args[1])
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.stdout, s)
			}
			fmt.Fprintf(a.stdout, "saved snapshot %s of %s (%s on disk)\n", s.Name, s.VM, sizeMiB(s.SizeBytes))
			return nil
		},
	}
	save.Flags().BoolVar(&asJSON, "json", false, "print the snapshot as JSON")
	var lsJSON bool
	ls := &cobra.Command{
		Use:               "ls NAME",
		Short:             "List the snapshots of VM NAME with their size on disk",
		Args:              nameArgs(1, 1),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.daemonClient(ctx)
			if err != nil {
				return err
			}
			snaps, err := c.Snapshots(ctx, args[0])
			if err != nil {
				return err
			}
			if lsJSON {
				return writeJSON(a.stdout, snaps)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tCREATED\tSIZE\tMEMORY\tDISK\tUSED BY")
			for _, s := range snaps {
				disk, used := "no", "-"
				if s.HasDisk {
					disk = "yes"
				}
				if len(s.Dependents) > 0 {
					used = strings.Join(s.Dependents, ",")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%dM\t%s\t%s\n", s.Name, s.CreatedAt.Local().Format("2006-01-02 15:04:05"), sizeMiB(s.SizeBytes), s.MemoryMiB, disk, used)
			}
			return tw.Flush()
		},
	}
	ls.Flags().BoolVar(&lsJSON, "json", false, "print JSON")
	rm := &cobra.Command{
		Use:               "rm NAME SNAP",
		Short:             "Remove snapshot SNAP of VM NAME (refused while a VM depends on it)",
		Args:              nameArgs(2, 2),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.daemonClient(ctx)
			if err != nil {
				return err
			}
			if err := c.RemoveSnapshot(ctx, args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "removed snapshot %s of %s\n", args[1], args[0])
			return nil
		},
	}
	cmd.AddCommand(save, ls, rm)
	return cmd
}

// sizeMiB formats a byte count in MiB.
func sizeMiB(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

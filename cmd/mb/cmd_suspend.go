package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) suspendCmd() *cobra.Command {
	var asJSON bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "suspend NAME...",
		Short: "Save running VMs' memory and state to disk and stop them; mb start resumes them",
		Long: `Pauses each VM, saves its device state and memory into the VM directory
(files 0600) and ends QEMU; mb ls shows it as suspended. mb start resumes the
guest where it was, in a fraction of a boot (mb start --cold boots afresh and
discards the saved state). A suspended VM counts as stopped by you: no restart
policy brings it back. After a resume the guest's clock is set through its
agent. VMs with host folder shares cannot be suspended.`,
		Example: `  mb suspend demo
  mb start demo          # resumes
  mb start demo --cold   # boots afresh instead`,
		Args:              nameArgs(1, -1),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.daemonClient(ctx)
			if err != nil {
				return err
			}
			return a.forEach(args, func(name string) error {
				t0 := time.Now()
				vm, err := c.Suspend(ctx, name, timeout)
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(a.stdout, vm)
				}
				fmt.Fprintf(a.stdout, "suspended %s (%.1fs)\n", name, time.Since(t0).Seconds())
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the VM as JSON")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "how long the save may take (default 2m)")
	return cmd
}

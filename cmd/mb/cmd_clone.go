package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/mbvm/mb/daemon/api"
)

func (a *app) cloneCmd() *cobra.Command {
	var from string
	var asJSON bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "clone SRC NEW... [--from SNAP]",
		Short: "Make and start new VMs from a snapshot of SRC",
		Long: `Makes each NEW from snapshot SNAP of SRC (without --from, from a new snapshot
of the running SRC named clone-NEW) and starts it where the snapshot left
off: its disk is an overlay on the snapshot's disk and its memory the
snapshot's, copy-on-write, so clones share the pages they do not change.
Through mb-agent each clone gets its own hostname and fresh entropy for its
random pool. SSH ports are chosen afresh; forwards are not copied.`,
		Example: `  mb snapshot save web ready
  mb clone web w1 w2 w3 --from ready`,
		Args:              nameArgs(2, -1),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.daemonClient(ctx)
			if err != nil {
				return err
			}
			src := args[0]
			if from == "" && len(args) > 2 {
				// One snapshot for all of them, not one each.
				from = "clone-" + args[1]
				if _, err := c.SaveSnapshot(ctx, src, from); err != nil {
					return err
				}
			}
			return a.forEach(args[1:], func(name string) error {
				begin := time.Now()
				req := api.CloneRequest{Name: name, From: from, TimeoutSeconds: int((timeout + time.Second - 1) / time.Second)}
				if _, err := c.Clone(ctx, src, req); err != nil {
					return err
				}
				vm, err := a.waitReady(ctx, c, name, "", begin, timeout, newProgress(a.stderr, name))
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(a.stdout, vm)
				}
				fmt.Fprintf(a.stdout, "%s is ready (%.1fs)%s\n", name, time.Since(begin).Seconds(), vmSummary(vm))
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the snapshot of SRC to clone (default: take one now)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print each new VM as JSON")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for each clone to be ready")
	return cmd
}

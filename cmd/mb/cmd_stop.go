package main

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/mbvm/mb/daemon/api"
)

func (a *app) stopCmd() *cobra.Command {
	var all, force bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "stop NAME... | --all",
		Short: "Stop VMs, gracefully unless --force",
		Long: `Stops VMs: first the guest agent's shutdown, then the ACPI power button,
then a kill, all within --timeout (default: the VM's stop_timeout, 30s).
--force kills at once. A stopped VM is never restarted by its restart policy
until you start it again.`,
		Example: `  mb stop demo
  mb stop a b c --timeout 10s
  mb stop --all
  mb stop demo --force`,
		ValidArgsFunction: a.completeVMNames,
		Args: func(cmd *cobra.Command, args []string) error {
			if all {
				return nameArgs(0, 0)(cmd, args)
			}
			return nameArgs(1, -1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.daemonClient(ctx)
			if err != nil {
				return err
			}
			names := args
			if all {
				vms, err := c.List(ctx)
				if err != nil {
					return err
				}
				for _, v := range vms {
					if v.State != api.StateStopped && v.State != api.StateCrashed {
						names = append(names, v.Name)
					}
				}
			}
			return a.forEach(names, func(name string) error {
				if _, err := c.Stop(ctx, name, timeout, force); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "stopped %s\n", name)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "stop every running VM")
	cmd.Flags().BoolVar(&force, "force", false, "kill at once instead of a graceful stop")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "graceful stop timeout (default: the VM's stop_timeout)")
	return cmd
}

// forEach runs fn for every name in parallel and joins the errors.
func (a *app) forEach(names []string, fn func(string) error) error {
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(n); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (a *app) restartCmd() *cobra.Command {
	var timeout time.Duration
	var noWait bool
	cmd := &cobra.Command{
		Use:               "restart NAME",
		Short:             "Stop a VM and start it again",
		Example:           `  mb restart demo`,
		Args:              nameArgs(1, 1),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, name := cmd.Context(), args[0]
			c, err := a.daemonClient(ctx)
			if err != nil {
				return err
			}
			begin := time.Now()
			if _, err := c.Stop(ctx, name, 0, false); err != nil {
				return err
			}
			if _, err := c.Start(ctx, name, timeout); err != nil {
				return err
			}
			if !noWait {
				prog := newProgress(a.stderr, name)
				defer prog.done()
				if _, err := a.waitReady(ctx, c, name, "", time.Now(), timeout, prog); err != nil {
					return err
				}
				prog.done()
			}
			fmt.Fprintf(a.stdout, "restarted %s (%.1fs)\n", name, time.Since(begin).Seconds())
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for the VM to be ready")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return as soon as the VM runs")
	return cmd
}

func (a *app) rmCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rm NAME...",
		Short: "Remove VMs and their files",
		Long:  `Removes stopped VMs and their directories. A running VM is refused unless --force, which stops it first.`,
		Example: `  mb rm demo
  mb rm --force demo`,
		Aliases:           []string{"delete"},
		Args:              nameArgs(1, -1),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.daemonClient(ctx)
			if err != nil {
				return err
			}
			return a.forEach(args, func(name string) error {
				if err := c.Delete(ctx, name, force); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "removed %s\n", name)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "stop a running VM first")
	return cmd
}

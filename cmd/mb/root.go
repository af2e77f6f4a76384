package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/vm/spec"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// app holds what the commands share: the streams and, once connected, the
// daemon client.
type app struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	client *api.Client
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "mb",
		Short: "Run Linux VMs with one command",
		Long: `mb runs Linux virtual machines with one command and watches them.

It talks to the per-user mb daemon over $MB_HOME/mb.sock ($MB_HOME defaults
to ~/.mb) and starts the daemon when it is not running.`,
		Example: `  mb start demo                 # create and boot a VM from the mini image
  mb exec demo -- uname -a      # run a command inside
  mb ls                         # list VMs
  mb stop demo && mb rm demo`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_ = cmd.Help()
			return usagef("a command is required (see the list above)")
		},
	}
	// No command takes a negative duration (--timeout, --interval, ...).
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		var bad error
		cmd.Flags().Visit(func(f *pflag.Flag) {
			if f.Value.Type() != "duration" || bad != nil {
				return
			}
			if d, err := time.ParseDuration(f.Value.String()); err == nil && d < 0 {
				bad = usagef("--%s %s: must not be negative (for example --%s 30s)", f.Name, f.Value, f.Name)
			}
		})
		return bad
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usagef("%v (see `%s --help`)", err, c.CommandPath())
	})
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(
		a.startCmd(), a.stopCmd(), a.restartCmd(), a.rmCmd(),
		a.lsCmd(), a.infoCmd(), a.logsCmd(), a.eventsCmd(), a.consoleCmd(),
		a.execCmd(), a.topCmd(), a.metricsCmd(),
		a.daemonCmd(), a.serviceCmd(), a.versionCmd(), a.completionCmd(),
		a.imageCmd(), a.sshCmd(), a.sshConfigCmd(),
		a.monitorCmd(),
		a.suspendCmd(), a.snapshotCmd(), a.cloneCmd(), // cmd_suspend.go, cmd_snapshot.go, cmd_clone.go
	)
	root.AddCommand(a.shellCmd(), a.cpCmd(), a.setCmd()) // the daily loop: cmd_shell.go, cmd_cp.go, cmd_set.go
	return root
}

// noArgs refuses positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		if cmd.HasSubCommands() {
			return usagef("unknown command %q for %q (see `%s --help`)", args[0], cmd.CommandPath(), cmd.CommandPath())
		}
		return usagef("%s takes no arguments, got %q", cmd.CommandPath(), strings.Join(args, " "))
	}
	return nil
}

// nameArgs accepts between min and max VM names (max < 0: no limit) and
// validates each.
func nameArgs(minN, maxN int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < minN || (maxN >= 0 && len(args) > maxN) {
			want := fmt.Sprintf("%d", minN)
			switch {
			case maxN < 0:
				want = fmt.Sprintf("at least %d", minN)
			case maxN != minN:
				want = fmt.Sprintf("%d to %d", minN, maxN)
			}
			return usagef("%s needs %s VM name(s), got %d (see `%s --help`)", cmd.CommandPath(), want, len(args), cmd.CommandPath())
		}
		for _, n := range args {
			if err := spec.ValidateName(n); err != nil {
				return &usageError{err: err}
			}
		}
		return nil
	}
}

// daemonClient connects to the daemon, starting it when it is not running.
func (a *app) daemonClient(ctx context.Context) (*api.Client, error) {
	if a.client != nil {
		return a.client, nil
	}
	c, err := connect(ctx, true)
	if err != nil {
		return nil, err
	}
	a.client = c
	return c, nil
}

// isTerminal reports whether f is a terminal.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	return ok && termios(int(file.Fd())) == nil
}

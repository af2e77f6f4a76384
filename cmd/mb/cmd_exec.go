package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/mbvm/mb/daemon/api"
)

// maxExecStdin caps the stdin mb exec passes (it travels in one request).
const maxExecStdin = 16 << 20

func (a *app) execCmd() *cobra.Command {
	var env []string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "exec NAME -- CMD [ARGS...]",
		Short: "Run a command in a VM through its guest agent",
		Long: `Runs CMD in the guest through its agent (mb-agent or qemu-guest-agent),
prints its stdout and stderr, and exits with its exit code. stdin is passed
to the command when it is not a terminal (up to 16 MiB). Output is capped at
16 MiB per stream; mb exec warns when it was cut. When the guest cannot
start the command, mb exec exits 127 (no such program) or 126 (not
executable), as a shell does; a command killed at --timeout exits 124, as
with timeout(1).`,
		Example: `  mb exec demo -- uname -a
  mb exec demo -- sh -c 'exit 7'; echo $?
  echo hello | mb exec demo -- cat
  mb exec demo -e FOO=bar -- sh -c 'echo $FOO'`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return usagef("mb exec needs a VM name and a command: mb exec NAME -- CMD [ARGS...]")
			}
			return nameArgs(1, 1)(cmd, args[:1])
		},
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			req := api.ExecRequest{Argv: args[1:], Env: env, TimeoutSeconds: int(timeout / time.Second)}
			if f, ok := a.stdin.(*os.File); !ok || !isTerminal(f) {
				data, err := io.ReadAll(io.LimitReader(a.stdin, maxExecStdin+1))
				if err != nil {
					return fmt.Errorf("read stdin for the command: %w", err)
				}
				if len(data) > maxExecStdin {
					return fmt.Errorf("stdin is over %d bytes: copy large files into the VM another way (scp over the SSH port)", maxExecStdin)
				}
				req.Stdin = data
			}
			c, err := a.daemonClient(ctx)
			if err != nil {
				return err
			}
			res, err := c.Exec(ctx, args[0], req)
			if err != nil {
				return err
			}
			_, _ = a.stdout.Write(res.Stdout)
			_, _ = a.stderr.Write(res.Stderr)
			if res.OutTruncated {
				fmt.Fprintln(a.stderr, "mb: the command's stdout was truncated (over the agent's output cap)")
			}
			if res.ErrTruncated {
				fmt.Fprintln(a.stderr, "mb: the command's stderr was truncated (over the agent's output cap)")
			}
			if res.ExecError != "" {
				fmt.Fprintf(a.stderr, "mb: VM %s: %s\n", args[0], res.ExecError)
			}
			if res.TimedOut {
				// Like timeout(1), so scripts can tell a timeout apart.
				return &exitError{code: 124}
			}
			if res.ExitCode != 0 {
				return &exitError{code: res.ExitCode}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&env, "env", "e", nil, "set an environment variable KEY=VALUE (repeatable)")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "kill the command after this long (default: the agent's limit, 60s)")
	return cmd
}

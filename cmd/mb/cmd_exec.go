package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mbvm/mb/daemon/api"
)

// maxExecStdin caps the stdin mb exec passes.
const maxExecStdin = 16 << 20

func (a *app) execCmd() *cobra.Command {
	var env []string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "exec NAME -- CMD [ARGS...]",
		Short: "Run a command in a VM through its guest agent",
		Long: `Runs CMD in the guest through its agent (mb-agent or qemu-guest-agent),
prints its stdout and stderr as they are produced, and exits with its exit
code. stdin is passed to the command when it is not a terminal (any size
with mb-agent; 512 KiB with qemu-guest-agent, whose output comes only at
the end, capped at 16 MiB per stream; mb exec warns when it was cut, as
with --timeout, which runs the command that way too). When the guest cannot start the command, mb exec exits 127
(no such program) or 126 (not executable), as a shell does; a command killed
at --timeout exits 124, as with timeout(1). There is no time limit unless
--timeout gives one. Ctrl-C (or SIGTERM) kills the command's process group
in the guest (mb-agent; qemu-guest-agent cannot kill it) and exits 130 (143).`,
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
			if timeout < 0 || (timeout > 0 && timeout%time.Second != 0) {
				return usagef("--timeout %v: give whole seconds, such as 30s or 5m (or leave it out for no limit)", timeout)
			}
			if args[1] == "" {
				return usagef("mb exec: the command is empty: give the program to run after --")
			}
			// Which signal ended the wait picks the exit code: 130 for
			// SIGINT, 143 for SIGTERM, as a shell reports them.
			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(sigs)
			ctx := cmd.Context()
			interrupted := func() error {
				code := 130
				select {
				case sig := <-sigs:
					if sig == syscall.SIGTERM {
						code = 143
					}
				default:
				}
				fmt.Fprintf(a.stderr, "mb: exec in VM %s interrupted: the command is killed in the guest (with qemu-guest-agent it runs on)\n", args[0])
				return &exitError{code: code}
			}
			f, isFile := a.stdin.(*os.File)
			stdinTerm := isFile && isTerminal(f)
			if timeout == 0 {
				// Output streams as it comes, stdin without a size limit.
				sio := streamIO{stdout: a.stdout, stderr: a.stderr, stdinChunk: 64 << 10}
				if !stdinTerm {
					sio.stdin = a.stdin
				}
				code, err := a.runStream(ctx, args[0], api.ExecStreamRequest{Argv: args[1:], Env: env}, sio)
				switch {
				case err == nil && code != 0:
					return &exitError{code: code}
				case err == nil:
					return nil
				case ctx.Err() != nil:
					return interrupted()
				case !errors.Is(err, errNoStream):
					return err
				}
				// A stock qemu-ga: the one-shot exec below.
			}
			req := api.ExecRequest{Argv: args[1:], Env: env, TimeoutSeconds: int(timeout / time.Second)}
			if !stdinTerm {
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
			if err != nil && ctx.Err() != nil {
				return interrupted()
			}
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
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "kill the command after this long, in whole seconds (default: no limit)")
	return cmd
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/vm/sshkeys"
)

// loginShell is what mb shell runs without a command: the guest's bash,
// else its sh, as a login shell in root's home.
var loginShell = []string{"/bin/sh", "-c", `cd "${HOME:-/}" 2>/dev/null; if command -v bash >/dev/null 2>&1; then exec bash -l; fi; exec sh -l`}

func (a *app) shellCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "shell NAME [-- CMD [ARGS...]]",
		Short: "Open an interactive shell in a VM, or run a command on a terminal there",
		Long: `Opens a login shell in the guest (bash, else sh), or runs CMD, through
mb-agent. When stdin is a terminal the command gets a pseudo-terminal in the
guest of the same size, kept in step when the window is resized; the local
terminal is in raw mode (Ctrl-C goes to the guest's foreground program) and
is restored on exit, whatever ended the session. Otherwise there is no
pseudo-terminal, as with ssh -T. Output streams either way; the exit code is
the command's. A guest without mb-agent but with an SSH key (a disk image
booted with cloud-init) gets the same over mb ssh.`,
		Example: `  mb shell demo
  mb shell demo -- top
  echo 'uname -a' | mb shell demo`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("mb shell needs a VM name: mb shell NAME [-- CMD...]")
			}
			if len(args) > 1 && args[1] == "" {
				return usagef("mb shell: the command is empty: give the program to run after --, or none for a login shell")
			}
			return nameArgs(1, 1)(cmd, args[:1])
		},
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			name, argv := args[0], args[1:]
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			// A hang-up of the local terminal ends the session too.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				select {
				case <-hup:
					cancel()
				case <-ctx.Done():
				}
			}()
			code, err := a.shell(ctx, name, argv)
			if errors.Is(err, errNoStream) || api.HasCode(err, api.CodeNoAgent) {
				code, err = a.shellOverSSH(ctx, name, argv, err)
			}
			if err != nil {
				if cmd.Context().Err() != nil {
					return &exitError{code: 130}
				}
				return err
			}
			if code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
	return cmd
}

// shell runs the session through mb-agent.
func (a *app) shell(ctx context.Context, name string, argv []string) (int, error) {
	if len(argv) == 0 {
		argv = loginShell
	}
	term := os.Getenv("TERM")
	if term == "" {
		term = "xterm"
	}
	req := api.ExecStreamRequest{Argv: argv, Env: []string{"TERM=" + term, "HOME=/root", "USER=root", "LOGNAME=root"}}
	sio := streamIO{stdin: a.stdin, stdinChunk: 32 << 10, stdout: a.stdout, stderr: a.stderr}
	in, ok := a.stdin.(*os.File)
	if !ok || !isTerminal(in) {
		return a.runStream(ctx, name, req, sio)
	}
	ws, err := winSize(in)
	if err != nil {
		return 0, err
	}
	req.TTY, req.Rows, req.Cols = true, ws[0], ws[1]
	restore, err := makeRaw(int(in.Fd()))
	if err != nil {
		return 0, err
	}
	// Restored however the session ends: a return, an error, a panic.
	defer restore()
	resize := make(chan [2]uint16, 1)
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-winch:
				if ws, err := winSize(in); err == nil {
					select {
					case resize <- ws:
					default:
						// A size not yet sent is replaced by this one.
						select {
						case <-resize:
						default:
						}
						resize <- ws
					}
				}
			}
		}
	}()
	sio.resize = resize
	sio.stdinChunk = 4 << 10
	return a.runStream(ctx, name, req, sio)
}

// winSize is the terminal's rows and columns (24x80 when it says 0).
func winSize(f *os.File) ([2]uint16, error) {
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return [2]uint16{}, fmt.Errorf("read the terminal size: %w", err)
	}
	if ws.Row == 0 || ws.Col == 0 {
		return [2]uint16{24, 80}, nil
	}
	return [2]uint16{ws.Row, ws.Col}, nil
}

// shellOverSSH runs the session with the system ssh, for a guest without
// mb-agent that has an SSH key; why is the reason mb-agent could not.
func (a *app) shellOverSSH(ctx context.Context, name string, argv []string, why error) (int, error) {
	t, err := a.sshTarget(ctx, name, sshkeys.DefaultUser)
	if err != nil {
		return 0, fmt.Errorf("%w (and SSH: %v)", why, err)
	}
	if err := checkSSHKey(t); err != nil {
		return 0, fmt.Errorf("%w; %v", why, err)
	}
	bin, err := exec.LookPath("ssh")
	if err != nil {
		return 0, fmt.Errorf("%w; ssh not found in PATH (apt-get install openssh-client)", why)
	}
	// ssh hands the remote shell one command line: quote every word.
	var remote []string
	if len(argv) > 0 {
		words := make([]string, len(argv))
		for i, w := range argv {
			words[i] = shellQuote(w) // cmd_cp.go
		}
		remote = []string{strings.Join(words, " ")}
	}
	full := sshkeys.Argv(t, remote)
	opts := full[1:]
	if f, ok := a.stdin.(*os.File); ok && isTerminal(f) {
		opts = append([]string{"-t"}, opts...) // a terminal, as over mb-agent
	} else {
		opts = append([]string{"-T"}, opts...)
	}
	c := exec.CommandContext(ctx, bin, opts...)
	c.Stdin, c.Stdout, c.Stderr = a.stdin, a.stdout, a.stderr
	err = c.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("run %s: %w", bin, err)
	}
	return 0, nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/vm/sshkeys"
)

// sshTarget asks the daemon where the VM's SSH port is and returns the
// target with the VM's key directory.
func (a *app) sshTarget(ctx context.Context, name, user string) (sshkeys.Target, error) {
	c, err := a.daemonClient(ctx)
	if err != nil {
		return sshkeys.Target{}, err
	}
	v, err := c.Inspect(ctx, name)
	if err != nil {
		return sshkeys.Target{}, err
	}
	if v.State != api.StateRunning || v.SSHPort == 0 {
		return sshkeys.Target{}, fmt.Errorf("VM %q is %s: SSH needs it running (mb start %s)", name, v.State, name)
	}
	dir := v.Dir
	if dir == "" {
		h, err := mbHome()
		if err != nil {
			return sshkeys.Target{}, err
		}
		dir = layout.VMDir(h, name)
	}
	t := sshkeys.Target{Name: name, Dir: dir, User: user, Port: v.SSHPort}
	if v.StartedAt != nil {
		t.Boot = strconv.FormatInt(v.StartedAt.UnixNano(), 36)
	}
	return t, nil
}

func (a *app) sshCmd() *cobra.Command {
	var (
		user    string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "ssh NAME [-- CMD [ARGS...]]",
		Short: "Open an SSH session in a VM, or run a command over SSH",
		Long: `Runs the system ssh against the VM's forwarded port on 127.0.0.1 with the
VM's own key. The guest's host key was injected by mb through cloud-init and
is checked strictly (a per-VM known_hosts with HostKeyAlias=NAME), so there
is no trust-on-first-use prompt and a changed port never breaks the check.
mb ssh first waits, up to --timeout, until SSH accepts the key. Its exit
code is the remote command's (255 for an SSH error).`,
		Example: `  mb ssh deb
  mb ssh deb -- uname -a
  mb ssh deb -- sudo journalctl -u cloud-final`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("mb ssh needs a VM name: mb ssh NAME [-- CMD...]")
			}
			return nameArgs(1, 1)(cmd, args[:1])
		},
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			bin, err := exec.LookPath("ssh")
			if err != nil {
				return fmt.Errorf("ssh not found in PATH: %w (install it: apt-get install openssh-client)", err)
			}
			t, err := a.sshTarget(ctx, args[0], user)
			if err != nil {
				return err
			}
			if err := checkSSHKey(t); err != nil {
				return err
			}
			argv, err := a.sshArgv(ctx, bin, t, timeout, args[1:])
			if err != nil {
				return err
			}
			// Not CommandContext: an interrupt belongs to ssh (and the
			// remote command), not to mb.
			c := exec.Command(bin, argv[1:]...)
			c.Stdin, c.Stdout, c.Stderr = a.stdin, a.stdout, a.stderr
			err = c.Run()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return &exitError{code: ee.ExitCode()}
			}
			if err != nil {
				return fmt.Errorf("run %s: %w", bin, err)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&user, "user", "l", sshkeys.DefaultUser, "guest user to log in as")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Minute, "how long to wait for SSH to accept")
	return cmd
}

// sshArgv waits, up to timeout, until the VM's SSH accepts its key, and
// returns the ssh command line for cmd. The VM's shared connection (an
// OpenSSH ControlMaster, kept MuxPersist after its last session) is the
// readiness check and the connection at once: a guest under emulation
// spends about a second on each new connection, so `mb ssh` opens at most
// one, and none while the shared one lives. Where it cannot be had, a
// handshake from mb checks readiness and ssh connects on its own.
func (a *app) sshArgv(ctx context.Context, bin string, t sshkeys.Target, timeout time.Duration, cmd []string) ([]string, error) {
	mux := t.MuxPath() != ""
	if mux && t.MuxAlive() {
		return sshkeys.MuxArgv(t, cmd), nil
	}
	startMux := func() bool {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return sshkeys.StartMux(sctx, bin, t) == nil
	}
	// Not up yet, or no sharing to be had: the handshake below tells.
	if mux && startMux() {
		return sshkeys.MuxArgv(t, cmd), nil
	}
	keys, err := sshkeys.Load(t.Dir)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = sshkeys.Probe(pctx, keys, t.User, t.Port)
	cancel()
	if err != nil {
		fmt.Fprintf(a.stderr, "mb: waiting up to %s for SSH on 127.0.0.1:%d\n", timeout, t.Port)
		wctx, cancel := context.WithTimeout(ctx, timeout)
		err = sshkeys.WaitReady(wctx, keys, t.User, t.Port, time.Second)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("VM %q: %w (is sshd running in the guest? see mb logs %s)", t.Name, err, t.Name)
		}
	}
	if mux && startMux() {
		return sshkeys.MuxArgv(t, cmd), nil
	}
	// SSH is up but will not share: ssh connects on its own.
	return sshkeys.Argv(t, cmd), nil
}

// checkSSHKey fails clearly for a VM that has no SSH key: mb makes keys
// only for disk images booted with cloud-init.
func checkSSHKey(t sshkeys.Target) error {
	if _, err := os.Stat(filepath.Join(t.Dir, sshkeys.ClientKeyFile)); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("VM %q has no SSH key: mb injects keys through cloud-init into disk images only, and this VM was not booted from one; use `mb exec %s -- CMD` instead", t.Name, t.Name)
	}
	return nil
}

func (a *app) sshConfigCmd() *cobra.Command {
	var user string
	cmd := &cobra.Command{
		Use:   "ssh-config NAME",
		Short: "Print an OpenSSH config block for a VM (for scp, rsync, editors)",
		Example: `  mb ssh-config deb >> ~/.ssh/config && ssh deb
  mb ssh-config deb > deb.sshconfig && rsync -e 'ssh -F deb.sshconfig' -a src/ deb:src/`,
		Args:              nameArgs(1, 1),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := a.sshTarget(cmd.Context(), args[0], user)
			if err != nil {
				return err
			}
			if err := checkSSHKey(t); err != nil {
				return err
			}
			_, err = fmt.Fprint(a.stdout, sshkeys.ConfigBlock(t))
			return err
		},
	}
	cmd.Flags().StringVarP(&user, "user", "l", sshkeys.DefaultUser, "guest user to log in as")
	return cmd
}

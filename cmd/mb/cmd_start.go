package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mbvm/mb/backend/qemu"
	"github.com/mbvm/mb/daemon"
	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/vm/spec"
)

// startOptions are mb start's flags.
type startOptions struct {
	image, kernel, initrd, cmdline, disk string
	backend, memory, accel, restart      string
	file                                 string
	cpus, sshPort                        int
	forwards, shares                     []string
	timeout                              time.Duration
	noWait                               bool
	wait                                 string
	cold                                 bool   // cmd_suspend.go
	from                                 string // cmd_snapshot.go
}

func (a *app) startCmd() *cobra.Command {
	var o startOptions
	cmd := &cobra.Command{
		Use:   "start NAME",
		Short: "Create a VM if needed, start it and wait until the guest is ready",
		Long: `Creates the VM NAME if it does not exist, starts it, and waits until the
guest is ready: its agent answers or, for an image without an agent, its
ready line appears on the console. With --wait app it also waits for a
program in the guest to report readiness through mb-agent's command socket
(mb-agent send '{"Command":"mb.ready"}'; --wait app:NAME for the one named
NAME). Starting a running VM does nothing.

Without image options the VM boots the mini image. Flags that differ from an
existing VM's spec are an error: remove the VM, or edit its spec.yaml while it
is stopped.`,
		Example: `  mb start demo
  mb start web --cpus 2 --memory 1G --forward 8080:80 --restart on-failure
  mb start dev -f dev.yaml
  mb start k --kernel bzImage --initrd initrd.img --cmdline "console=ttyS0"
  mb start demo --no-wait
  mb start web --wait app:web
  mb start demo --cold         # a suspended VM, booted afresh
  mb start demo --from before  # back to snapshot "before"`,
		Args:              nameArgs(1, 1),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.start(cmd, args[0], &o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.image, "image", "", "image under $MB_HOME/images (default mini)")
	f.StringVar(&o.kernel, "kernel", "", "kernel for a direct kernel boot")
	f.StringVar(&o.initrd, "initrd", "", "initrd for a direct kernel boot")
	f.StringVar(&o.cmdline, "cmdline", "", "kernel command line")
	f.StringVar(&o.disk, "disk", "", "boot disk image (qcow2 or raw)")
	f.IntVar(&o.cpus, "cpus", 0, "virtual CPUs (default 1)")
	f.StringVar(&o.memory, "memory", "", "guest memory, for example 512M or 2G (default 512M)")
	f.StringVar(&o.accel, "accel", "", "accelerator: auto, kvm, hvf or tcg (default auto)")
	f.IntVar(&o.sshPort, "ssh-port", 0, "host port on 127.0.0.1 forwarded to guest port 22 (default: a free port)")
	f.StringArrayVar(&o.forwards, "forward", nil, "forward HOST:GUEST[/udp] from 127.0.0.1 (repeatable)")
	f.StringArrayVar(&o.shares, "share", nil, "share a host directory with the guest: HOST:GUEST[:ro] (repeatable)")
	f.StringVar(&o.restart, "restart", "", "restart policy: no, on-failure or always (default no)")
	f.StringVar(&o.backend, "backend", "", "backend: qemu or fake (default qemu)")
	f.StringVarP(&o.file, "file", "f", "", "VM spec file (spec.yaml format); flags override its fields")
	f.DurationVar(&o.timeout, "timeout", 2*time.Minute, "how long to wait for the VM to be ready")
	f.BoolVar(&o.noWait, "no-wait", false, "return as soon as the VM runs, without waiting for the guest")
	f.StringVar(&o.wait, "wait", "agent", "what to wait for: agent, app (any mb.ready from the guest) or app:NAME")
	f.BoolVar(&o.cold, "cold", false, "boot a suspended VM afresh, discarding its saved state")
	f.StringVar(&o.from, "from", "", "restore the VM from its snapshot SNAP (memory and disk)")
	return cmd
}

func (a *app) start(cmd *cobra.Command, name string, o *startOptions) error {
	app, err := api.ParseWait(o.wait)
	if err != nil {
		return fmt.Errorf("--%v", err)
	}
	if app != "" && o.noWait {
		return fmt.Errorf("--wait %s and --no-wait contradict each other: pick one", o.wait)
	}
	want, fields, err := o.spec(cmd, name)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	c, err := a.daemonClient(ctx)
	if err != nil {
		return err
	}
	if want.Backend == "" || want.Backend == "qemu" {
		if st, err := c.Ping(ctx); err == nil {
			a.warnEnv(st, want)
		}
	}
	begin := time.Now()
	prog := newProgress(a.stderr, name)
	defer prog.done()
	prog.set("checking")
	vm, err := c.Inspect(ctx, name)
	created := false // this command created the VM
	if api.IsNotFound(err) {
		doc, merr := want.Marshal()
		if merr != nil {
			return merr
		}
		prog.set("creating")
		vm, err = c.Create(ctx, doc)
		created = err == nil
		if api.IsExists(err) {
			// Another mb start created it meanwhile: compare with that one.
			vm, err = c.Inspect(ctx, name)
		}
	}
	if err != nil {
		return err
	}
	if diffs, err := specDiff(vm, want, fields); err != nil {
		return err
	} else if len(diffs) > 0 {
		return fmt.Errorf("VM %s exists with a different %s; to change it, remove the VM (mb rm %s) or edit %s/spec.yaml while it is stopped", name, joinDiffs(diffs), name, vm.Dir)
	}
	wasRunning := vm.State == api.StateRunning
	portBefore := qemu.RememberedSSHPort(vm.Dir)
	prog.set("starting")
	vm, err = c.StartWith(ctx, name, api.StartRequest{TimeoutSeconds: int((o.timeout + time.Second - 1) / time.Second), Wait: o.wait, Cold: o.cold, From: o.from})
	if err != nil {
		if created {
			return a.dropFailedVM(c, name, err)
		}
		return err
	}
	if !o.noWait {
		if vm, err = a.waitReady(ctx, c, name, app, begin, o.timeout, prog); err != nil {
			return err
		}
	}
	prog.done()
	switch {
	case wasRunning:
		fmt.Fprintf(a.stdout, "%s is already running\n", name)
	case o.noWait:
		fmt.Fprintf(a.stdout, "%s is running (not waiting for the guest)\n", name)
	default:
		fmt.Fprintf(a.stdout, "%s is ready (%.1fs)%s\n", name, time.Since(begin).Seconds(), vmSummary(vm))
	}
	a.noteSSHPortChange(name, vm.Dir, portBefore) // cmd_set.go
	return nil
}

// dropFailedVM removes a VM this command created when its first start
// failed because vmhost could not start it at all (a port in use, a bad
// disk): nothing is left half-made, and the same command works once the
// cause is fixed. A VM that started and then crashed or timed out is kept
// for its logs.
func (a *app) dropFailedVM(c *api.Client, name string, startErr error) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vm, err := c.Inspect(ctx, name)
	if err != nil || vm.State != api.StateCrashed || vm.ExitCode == nil || *vm.ExitCode != 2 {
		return startErr
	}
	if err := c.Delete(ctx, name, true); err != nil {
		return fmt.Errorf("%w (removing the new VM %s failed too: %v; remove it with `mb rm --force %s`)", startErr, name, err, name)
	}
	// startErr points to the VM's vmhost.log, which is gone now; the
	// reason holds what it said.
	return fmt.Errorf("VM %s did not start: %s; the new VM was not kept, so the same command works once this is fixed", name, vm.Reason)
}

// vmSummary is a short suffix with the SSH port and IPs.
func vmSummary(vm *api.VM) string {
	s := ""
	if vm.SSHPort != 0 {
		s += fmt.Sprintf(", ssh 127.0.0.1:%d", vm.SSHPort)
	}
	if len(vm.IPs) > 0 {
		s += ", ip " + vm.IPs[0]
	}
	return s
}

// waitReady polls the VM until it is ready (and, with app set, until the
// guest reported that readiness: "*" for any), fails, or the timeout
// passes.
func (a *app) waitReady(ctx context.Context, c *api.Client, name, app string, begin time.Time, timeout time.Duration, prog *progress) (*api.VM, error) {
	deadline := begin.Add(timeout)
	// Polled quickly at first: a resumed VM is ready in a fraction of a
	// second.
	delay := 20 * time.Millisecond
	for {
		vm, err := c.Inspect(ctx, name)
		if err != nil {
			return nil, err
		}
		switch {
		case vm.Ready && (app == "" || vm.AppReady(app)):
			return vm, nil
		case vm.State == api.StateCrashed || vm.State == api.StateStopped:
			return nil, fmt.Errorf("VM %s %s while booting: %s (see `mb logs %s` and `mb logs --vmhost %s`)", name, vm.State, orDash(vm.Reason), name, name)
		}
		what := "waiting for the guest"
		if a := vm.AgentState(); a != "" {
			what = "waiting for the guest agent (" + a + ")"
		}
		if vm.Ready {
			what = "waiting for the guest's mb.ready"
			if app != "*" {
				what += " named " + app
			}
		}
		prog.set(what)
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("VM %s is running but the guest was not ready within %s (%s): see `mb logs %s`, or raise --timeout", name, timeout, what, name)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}

// spec builds the wanted spec from -f and the flags, and lists the spec
// fields the user set (to compare with an existing VM).
func (o *startOptions) spec(cmd *cobra.Command, name string) (*spec.Spec, []string, error) {
	s := &spec.Spec{}
	var fields []string
	if o.file != "" {
		data, err := os.ReadFile(o.file)
		if err != nil {
			return nil, nil, fmt.Errorf("read spec file: %w", err)
		}
		fs, err := spec.Parse(data)
		if err != nil {
			return nil, nil, usagef("%s: %w", o.file, err)
		}
		// Files named in a spec file are relative to the file, not to the
		// daemon's working directory.
		if dir, err := filepath.Abs(filepath.Dir(o.file)); err == nil {
			fs.ResolvePaths(dir)
		}
		if fs.Name != "" && fs.Name != name {
			return nil, nil, usagef("%s names the VM %q but the command names %q: make them agree", o.file, fs.Name, name)
		}
		s = fs
		if fields, err = specFileFields(data); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", o.file, err)
		}
	}
	s.Name = name
	changed := cmd.Flags().Changed
	set := func(flag, field string, apply func() error) error {
		if !changed(flag) {
			return nil
		}
		if err := apply(); err != nil {
			return &usageError{err: fmt.Errorf("--%s: %w", flag, err)}
		}
		fields = appendUnique(fields, field)
		return nil
	}
	steps := []error{
		set("image", "image", func() error { s.Image = o.image; return nil }),
		set("kernel", "kernel", func() error { s.Kernel = o.kernel; return absPath(&s.Kernel) }),
		set("initrd", "initrd", func() error { s.Initrd = o.initrd; return absPath(&s.Initrd) }),
		set("cmdline", "cmdline", func() error { s.Cmdline = o.cmdline; return nil }),
		set("disk", "disk", func() error { s.Disk = o.disk; return absPath(&s.Disk) }),
		set("cpus", "cpus", func() error {
			// In a spec 0 means the default; on the command line it is a mistake.
			if o.cpus < 1 {
				return fmt.Errorf("%d CPUs: use 1 or more (for example --cpus 2)", o.cpus)
			}
			s.CPUs = o.cpus
			return nil
		}),
		set("memory", "memory", func() error {
			m, err := spec.ParseSize(o.memory)
			s.Memory = m
			return err
		}),
		set("accel", "accel", func() error {
			v, err := spec.ParseAccel(o.accel)
			s.Accel = v
			return err
		}),
		set("ssh-port", "ssh_port", func() error { s.SSHPort = o.sshPort; return nil }),
		set("forward", "forwards", func() error {
			s.Forwards = nil
			for _, f := range o.forwards {
				fw, err := spec.ParseForward(f)
				if err != nil {
					return err
				}
				s.Forwards = append(s.Forwards, fw)
			}
			return nil
		}),
		set("share", "shares", func() (err error) { s.Shares, err = parseShares(o.shares); return err }), // shares.go
		set("restart", "restart", func() error {
			p, err := spec.ParseRestartPolicy(o.restart)
			s.Restart = p
			return err
		}),
		set("backend", "backend", func() error { s.Backend = o.backend; return nil }),
	}
	for _, err := range steps {
		if err != nil {
			return nil, nil, err
		}
	}
	if o.timeout <= 0 {
		return nil, nil, usagef("--timeout must be positive, for example 2m")
	}
	// The daemon checks again; checking here makes a bad flag or spec file
	// a usage error (exit code 2) without a round trip.
	if err := s.Validate(); err != nil {
		return nil, nil, usagef("bad spec for VM %s: %w", name, err)
	}
	if err := s.CheckFiles(); err != nil {
		return nil, nil, usagef("VM %s: %w", name, err)
	}
	return s, fields, nil
}

func appendUnique(list []string, s string) []string {
	for _, v := range list {
		if v == s {
			return list
		}
	}
	return append(list, s)
}

// warnEnv warns when this shell would run the VM differently from the
// daemon, whose environment applies: another MB_ACCEL, or another QEMU on
// PATH (unless the spec names its qemu_binary).
func (a *app) warnEnv(st *api.DaemonStatus, want *spec.Spec) {
	daemonEnv := func(key string) string {
		for _, kv := range st.Env {
			if k, v, ok := strings.Cut(kv, "="); ok && k == key {
				return v
			}
		}
		return ""
	}
	if mine, theirs := os.Getenv(qemu.AccelEnv), daemonEnv(qemu.AccelEnv); mine != theirs {
		fmt.Fprintf(a.stderr, "mb: warning: %s is %s here but %s in the mb daemon (PID %d), whose value applies: to use yours, restart the daemon (`mb daemon stop`; the next mb command starts it from this shell)\n",
			qemu.AccelEnv, quoteOrUnset(mine), quoteOrUnset(theirs), st.PID)
	}
	if want.QEMUBinary == "" {
		if mine := daemon.FindQEMU(); mine != st.QEMU {
			fmt.Fprintf(a.stderr, "mb: warning: the QEMU on your PATH is %s but the mb daemon's is %s, which the VM uses: set qemu_binary in the spec, or restart the daemon (`mb daemon stop`) from this shell\n",
				orDash(mine), orDash(st.QEMU))
		}
	}
}

func quoteOrUnset(s string) string {
	if s == "" {
		return "unset"
	}
	return strconv.Quote(s)
}

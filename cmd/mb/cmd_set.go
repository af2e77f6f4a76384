package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mbvm/mb/backend/qemu"
	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/vm/spec"
)

func (a *app) setCmd() *cobra.Command {
	var (
		cpus                                 int
		memory, diskSize, accel, policy, cmd string
		sshPort                              int
		forwards                             []string
		restart                              bool
		timeout                              time.Duration
	)
	c := &cobra.Command{
		Use:   "set NAME [--cpus N] [--memory SIZE] [--disk-size SIZE] ...",
		Short: "Change a stopped VM's CPUs, memory, disk size and other settings",
		Long: `Changes the given fields of a VM's spec.yaml, checked as mb start checks its
flags; they apply at the next start. A running VM is refused: stop it first,
or give --restart to stop it, apply the change and start it again. The disk
only grows (--disk-size smaller than the disk is refused at start).`,
		Example: `  mb set demo --cpus 2 --memory 1G
  mb set deb --disk-size 40G --restart`,
		Args:              nameArgs(1, 1),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cc *cobra.Command, args []string) error {
			name := args[0]
			changed := cc.Flags().Changed
			var fields []string
			upd := &spec.Spec{Name: name}
			set := func(flag, field string, apply func() error) error {
				if !changed(flag) {
					return nil
				}
				if err := apply(); err != nil {
					return &usageError{err: fmt.Errorf("--%s: %w", flag, err)}
				}
				fields = append(fields, field)
				return nil
			}
			for _, err := range []error{
				set("cpus", "cpus", func() error {
					if cpus < 1 {
						return fmt.Errorf("%d CPUs: use 1 or more (for example --cpus 2)", cpus)
					}
					upd.CPUs = cpus
					return nil
				}),
				set("memory", "memory", func() error { var err error; upd.Memory, err = spec.ParseSize(memory); return err }),
				set("disk-size", "disk_size", func() error { var err error; upd.DiskSize, err = spec.ParseSize(diskSize); return err }),
				set("accel", "accel", func() error { var err error; upd.Accel, err = spec.ParseAccel(accel); return err }),
				set("restart-policy", "restart", func() error { var err error; upd.Restart, err = spec.ParseRestartPolicy(policy); return err }),
				set("cmdline", "cmdline", func() error { upd.Cmdline = cmd; return nil }),
				set("ssh-port", "ssh_port", func() error { upd.SSHPort = sshPort; return nil }),
				set("forward", "forwards", func() error {
					for _, f := range forwards {
						fw, err := spec.ParseForward(f)
						if err != nil {
							return err
						}
						upd.Forwards = append(upd.Forwards, fw)
					}
					return nil
				}),
			} {
				if err != nil {
					return err
				}
			}
			if len(fields) == 0 {
				return usagef("mb set: nothing to change: give at least one of --cpus, --memory, --disk-size, --accel, --restart-policy, --cmdline, --ssh-port, --forward")
			}
			ctx := cc.Context()
			client, err := a.daemonClient(ctx)
			if err != nil {
				return err
			}
			v, err := client.Inspect(ctx, name)
			if err != nil {
				return err
			}
			running := v.State != api.StateStopped && v.State != api.StateCrashed
			if running && !restart {
				return fmt.Errorf("VM %s is %s: stop it first (mb stop %s), or add --restart to stop it, apply the change and start it again", name, v.State, name)
			}
			dir := v.Dir
			if dir == "" {
				h, err := mbHome()
				if err != nil {
					return err
				}
				dir = layout.VMDir(h, name)
			}
			// The new spec is checked whole before anything stops.
			next, err := mergeSpec(dir, upd, fields)
			if err != nil {
				return err
			}
			if running {
				fmt.Fprintf(a.stderr, "mb: stopping VM %s to apply the change\n", name)
				if _, err := client.Stop(ctx, name, 0, false); err != nil {
					return fmt.Errorf("stop VM %s: %w", name, err)
				}
			}
			if err := next.Save(dir); err != nil {
				return fmt.Errorf("save VM %s's spec: %w", name, err)
			}
			fmt.Fprintf(a.stdout, "VM %s: set %s\n", name, strings.Join(fields, ", "))
			if !running {
				return nil
			}
			begin := time.Now()
			if _, err := client.Start(ctx, name, timeout); err != nil {
				return fmt.Errorf("start VM %s again: %w", name, err)
			}
			prog := newProgress(a.stderr, name)
			defer prog.done()
			_, err = a.waitReady(ctx, client, name, "", begin, timeout, prog)
			return err
		},
	}
	f := c.Flags()
	f.IntVar(&cpus, "cpus", 0, "virtual CPUs")
	f.StringVar(&memory, "memory", "", "guest memory, for example 2G")
	f.StringVar(&diskSize, "disk-size", "", "grow the VM's disk to this size, for example 40G (disk images)")
	f.StringVar(&accel, "accel", "", "accelerator: auto, kvm, hvf or tcg")
	f.StringVar(&policy, "restart-policy", "", "restart policy: no, on-failure or always")
	f.StringVar(&cmd, "cmdline", "", "kernel command line")
	f.IntVar(&sshPort, "ssh-port", 0, "host port on 127.0.0.1 forwarded to guest port 22 (0: a free port)")
	f.StringArrayVar(&forwards, "forward", nil, "forward HOST:GUEST[/udp] from 127.0.0.1 (repeatable; replaces the list)")
	f.BoolVar(&restart, "restart", false, "stop a running VM, apply the change and start it again")
	f.DurationVar(&timeout, "timeout", 2*time.Minute, "with --restart, how long to wait for the guest to be ready")
	return c
}

// mergeSpec reads dir/spec.yaml, replaces fields with upd's, and checks
// the result as mb start would.
func mergeSpec(dir string, upd *spec.Spec, fields []string) (*spec.Spec, error) {
	data, err := os.ReadFile(filepath.Join(dir, spec.FileName))
	if err != nil {
		return nil, fmt.Errorf("read the VM's spec: %w", err)
	}
	have, err := spec.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (fix it by hand first)", filepath.Join(dir, spec.FileName), err)
	}
	m, err := specFields(have)
	if err != nil {
		return nil, err
	}
	u, err := specFields(upd)
	if err != nil {
		return nil, err
	}
	for _, f := range fields {
		if v, ok := u[f]; ok {
			m[f] = v
		} else {
			delete(m, f) // set to the default (0, empty)
		}
	}
	next, err := specFromFields(m)
	if err != nil {
		return nil, err
	}
	check := *next
	check.SetDefaults()
	if err := check.Validate(); err != nil {
		return nil, usagef("bad spec for VM %s: %w", next.Name, err)
	}
	return next, nil
}

// noteSSHPortChange says when a VM's automatic SSH port differs from the
// one it had before this start (that one was taken), since a saved
// mb ssh-config then needs refreshing.
func (a *app) noteSSHPortChange(name, dir string, before int) {
	if before == 0 || dir == "" {
		return
	}
	if now := qemu.RememberedSSHPort(dir); now != 0 && now != before {
		fmt.Fprintf(a.stderr, "mb: VM %s's SSH port %d from its last start was taken: it now has %d (refresh a saved `mb ssh-config %s`)\n", name, before, now, name)
	}
}

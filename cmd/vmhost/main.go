// Command vmhost supervises one VM: it starts the VM's backend, serves the
// control socket <dir>/vmhost.sock and exits when the VM exits (0 for a
// clean stop, 1 for a crash, 2 when it could not start). The daemon spawns
// one per VM; it also runs by itself in the foreground under systemd, Nomad
// or a shell:
//
//	vmhost --dir /tmp/vm1 --backend fake
//	vmhost --dir ~/.mb/vms/demo
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/vm/spec"
	"github.com/mbvm/mb/vmhost/process"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("vmhost", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: vmhost --dir DIR [--backend qemu|fake] [overrides]\n\n"+
			"Runs one VM described by DIR/spec.yaml and serves DIR/vmhost.sock.\n"+
			"Flags override single spec fields; without spec.yaml they describe the VM.\n\n"+
			"Example:\n  vmhost --dir /tmp/vm1 --backend fake\n  echo '{\"method\":\"status\"}' | socat - UNIX-CONNECT:/tmp/vm1/vmhost.sock\n\nFlags:\n")
		fs.PrintDefaults()
	}
	dir := fs.String("dir", "", "the VM directory (required)")
	backend := fs.String("backend", "", "backend: qemu or fake (default: the spec's, else qemu)")
	mbHome := fs.String("home", "", "mb state directory for image lookup (default $MB_HOME or ~/.mb)")
	kernel := fs.String("kernel", "", "kernel image for direct boot")
	initrd := fs.String("initrd", "", "initrd for direct boot")
	cmdline := fs.String("cmdline", "", "kernel command line")
	disk := fs.String("disk", "", "boot disk")
	image := fs.String("image", "", "image name under $MB_HOME/images")
	cpus := fs.Int("cpus", 0, "number of virtual CPUs")
	memory := fs.String("memory", "", "guest memory, e.g. 512M or 2G")
	accel := fs.String("accel", "", "accelerator: auto, kvm, hvf or tcg")
	sshPort := fs.Int("ssh-port", -1, "host port forwarded to guest port 22 (0 picks one)")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "vmhost: --dir is required and no positional arguments are accepted (see vmhost --help)")
		return 2
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	h := *mbHome
	if h == "" {
		var err error
		if h, err = layout.Dir(); err != nil {
			logger.Error("cannot find mb's state directory", "err", err)
			return 2
		}
	}
	override := func(s *spec.Spec) error {
		if *image != "" {
			s.Image = *image
		}
		if *kernel != "" {
			s.Kernel, s.Image = *kernel, ""
		}
		if *initrd != "" {
			s.Initrd = *initrd
		}
		if *cmdline != "" {
			s.Cmdline = *cmdline
		}
		if *disk != "" {
			// The stored format was decided for the spec's own disk.
			s.Disk, s.DiskFormat = *disk, ""
		}
		if *cpus != 0 {
			s.CPUs = *cpus
		}
		if *memory != "" {
			m, err := spec.ParseSize(*memory)
			if err != nil {
				return fmt.Errorf("--memory: %w", err)
			}
			s.Memory = m
		}
		if *accel != "" {
			a, err := spec.ParseAccel(*accel)
			if err != nil {
				return fmt.Errorf("--accel: %w", err)
			}
			s.Accel = a
		}
		if *sshPort >= 0 {
			s.SSHPort = *sshPort
		}
		return nil
	}
	return process.Run(context.Background(), process.Config{
		Dir: *dir, Home: h, Backend: *backend, Override: override, Logger: logger,
	})
}

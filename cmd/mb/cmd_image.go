package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/cheggaaa/pb/v3"
	"github.com/spf13/cobra"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/vm/image"
)

// imageCmd is `mb image`: the image cache under $MB_HOME/images. Every
// command goes through the daemon (started when needed), the one writer of
// $MB_HOME, which holds each image's lock while it changes it.
func (a *app) imageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage the image cache (pull, import, ls, rm)",
		Long: `Images live in $MB_HOME/images/<name>/, each described by an image.yaml:
a disk (qcow2 or raw, booted through UEFI or as the root of a kernel), or a
kernel with its initrd. A VM's disk is a qcow2 overlay on the image's disk,
which is never written.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_ = cmd.Help()
			return usagef("mb image needs a subcommand: pull, import, ls or rm")
		},
	}
	cmd.AddCommand(a.imagePullCmd(), a.imageImportCmd(), a.imageLsCmd(), a.imageRmCmd())
	return cmd
}

func (a *app) imagePullCmd() *cobra.Command {
	var o api.ImageRequest
	cmd := &cobra.Command{
		Use:   "pull URL",
		Short: "Download a disk image into the cache",
		Long: `Downloads a qcow2 or raw disk image over http, https or file:// into
$MB_HOME/images/<name>/. An interrupted download resumes where the server
supports it. With --sha256 the digest is checked; the digest computed is
always recorded. A partial or wrong download is removed. A progress bar is
shown on a terminal.`,
		Example: `  mb image pull https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2 --name debian-12
  mb image pull file:///srv/images/base.qcow2 --sha256 3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("mb image pull needs one URL: mb image pull URL [--sha256 HEX] [--name NAME]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.URL = args[0]
			if o.Name == "" {
				o.Name = image.NameFromSource(o.URL)
			}
			if err := image.ValidateName(o.Name); err != nil {
				return usagef("%v", err)
			}
			c, err := connect(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer c.Close()
			bar := newPullBar(a.stderr)
			m, err := c.CreateImage(cmd.Context(), o, bar.update)
			bar.finish()
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s\t%s\tsha256:%s\n", m.Name, m.Format, m.SHA256)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.SHA256, "sha256", "", "expected SHA-256 digest (hex); the pull fails when it differs")
	f.StringVar(&o.Name, "name", "", "image name (default: from the URL's file name)")
	f.StringVar(&o.Arch, "arch", "", "record the image's architecture (x86_64 or aarch64)")
	return cmd
}

func (a *app) imageImportCmd() *cobra.Command {
	var o api.ImageRequest
	cmd := &cobra.Command{
		Use:   "import [FILE] --name NAME",
		Short: "Copy a local disk image (or a kernel and initrd) into the cache",
		Example: `  mb image import debian.qcow2 --name deb
  mb image import rootfs.qcow2 --name deb --kernel vmlinuz --initrd initrd.img --cmdline "root=/dev/vda console=ttyS0"
  mb image import --name mini --kernel vmlinuz --initrd initrd.img`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("mb image import takes at most one disk file, got %d", len(args))
			}
			if len(args) == 0 && o.Kernel == "" {
				return usagef("mb image import needs a disk file or --kernel")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.Disk = args[0]
			}
			if o.Name != "" {
				if err := image.ValidateName(o.Name); err != nil {
					return usagef("%v", err)
				}
			}
			// The daemon reads the files: give it absolute paths.
			for _, p := range []*string{&o.Disk, &o.Kernel, &o.Initrd} {
				if *p == "" {
					continue
				}
				abs, err := filepath.Abs(*p)
				if err != nil {
					return fmt.Errorf("import %s: %w", *p, err)
				}
				*p = abs
			}
			c, err := connect(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer c.Close()
			m, err := c.CreateImage(cmd.Context(), o, nil)
			if err != nil {
				return err
			}
			format := m.Format
			if format == "" {
				format = "kernel"
			}
			fmt.Fprintf(a.stdout, "%s\t%s\t%s\n", m.Name, format, orDash(m.SHA256))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Name, "name", "", "image name (default: from the file name)")
	f.StringVar(&o.Kernel, "kernel", "", "kernel for direct boot")
	f.StringVar(&o.Initrd, "initrd", "", "initrd for the kernel")
	f.StringVar(&o.Cmdline, "cmdline", "", "kernel command line (for a root disk: root=/dev/vda)")
	f.StringVar(&o.Arch, "arch", "", "record the image's architecture (x86_64 or aarch64)")
	f.StringVar(&o.Agent, "agent", "", "the guest agent the image runs: mb-agent, qemu-ga or none")
	return cmd
}

func (a *app) imageLsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the cached images, their size, format, digest and the VMs using them",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer c.Close()
			entries, err := c.Images(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(entries)
			}
			printImages(a.stdout, entries)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printImages(w io.Writer, entries []api.Image) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tFORMAT\tSIZE\tDISK SIZE\tSHA256\tUSED BY")
	for _, e := range entries {
		virt := "-"
		if e.VirtualSize > 0 {
			virt = bytesHuman(uint64(e.VirtualSize))
		}
		digest := "-"
		if e.SHA256 != "" {
			digest = e.SHA256[:min(12, len(e.SHA256))]
		}
		format := orDash(e.Format)
		if e.Error != "" {
			format = "broken"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, format, bytesHuman(uint64(e.Size)), virt, digest, orDash(strings.Join(e.UsedBy, ",")))
	}
	_ = tw.Flush()
	for _, e := range entries {
		if e.Error != "" {
			fmt.Fprintf(w, "%s: %s\n", e.Name, e.Error)
		}
	}
}

func (a *app) imageRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME...",
		Short: "Remove images no VM uses",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("mb image rm needs at least one image name")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, name := range args {
				if err := image.ValidateName(name); err != nil {
					return usagef("%v", err)
				}
			}
			c, err := connect(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer c.Close()
			var errs []error
			for _, name := range args {
				if err := c.RemoveImage(cmd.Context(), name); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintln(a.stdout, name)
			}
			return errors.Join(errs...)
		},
	}
}

// pullBar draws a pull's progress on a terminal; elsewhere it draws
// nothing.
type pullBar struct {
	w   io.Writer
	bar *pb.ProgressBar
}

func newPullBar(w io.Writer) *pullBar {
	if f, ok := w.(*os.File); ok && image.TerminalProgress(f) != nil {
		return &pullBar{w: w}
	}
	return &pullBar{}
}

// update moves the bar to done of total bytes (total -1: unknown).
func (p *pullBar) update(done, total int64) {
	if p.w == nil {
		return
	}
	if p.bar == nil {
		p.bar = pb.New64(max(total, 0)).SetTemplate(pb.Full).Set(pb.Bytes, true).SetWriter(p.w).SetWidth(80).Start()
	}
	if total > 0 {
		p.bar.SetTotal(total)
	}
	p.bar.SetCurrent(done)
}

func (p *pullBar) finish() {
	if p.bar != nil {
		p.bar.Finish()
	}
}

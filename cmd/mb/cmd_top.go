package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/mbvm/mb/agent/qgaproto"
)

func (a *app) metricsCmd() *cobra.Command {
	var watch bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "metrics NAME",
		Short: "Print a VM's guest metrics as JSON (cumulative counters)",
		Example: `  mb metrics demo | jq .memory
  mb metrics demo --watch`,
		Args:              nameArgs(1, 1),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.daemonClient(ctx)
			if err != nil {
				return err
			}
			for {
				m, err := c.Metrics(ctx, args[0])
				if err != nil {
					return err
				}
				var v any
				if err := json.Unmarshal(m, &v); err != nil {
					return fmt.Errorf("bad metrics document: %w", err)
				}
				if err := writeJSON(a.stdout, v); err != nil {
					return err
				}
				if !watch || !sleepCtx(ctx, interval) {
					return nil
				}
			}
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "print a new sample every --interval")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "time between samples with --watch")
	return cmd
}

func (a *app) topCmd() *cobra.Command {
	var interval time.Duration
	var count int
	cmd := &cobra.Command{
		Use:   "top NAME",
		Short: "Show a VM's CPU, memory, load, disk and network, refreshed",
		Example: `  mb top demo
  mb top demo --count 1     # one sample (two reads, for the CPU rate)`,
		Args:              nameArgs(1, 1),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.daemonClient(ctx)
			if err != nil {
				return err
			}
			sample := func() (*qgaproto.Metrics, time.Time, error) {
				raw, err := c.Metrics(ctx, args[0])
				if err != nil {
					return nil, time.Time{}, err
				}
				var m qgaproto.Metrics
				if err := json.Unmarshal(raw, &m); err != nil {
					return nil, time.Time{}, fmt.Errorf("bad metrics document: %w", err)
				}
				return &m, time.Now(), nil
			}
			prev, prevAt, err := sample()
			if err != nil {
				return err
			}
			tty := isTerminal(a.stdout)
			for i := 0; count <= 0 || i < count; i++ {
				if !sleepCtx(ctx, interval) {
					return nil
				}
				cur, at, err := sample()
				if err != nil {
					return err
				}
				if tty {
					fmt.Fprint(a.stdout, "\033[H\033[2J")
				}
				printTop(a.stdout, args[0], prev, cur, at.Sub(prevAt))
				prev, prevAt = cur, at
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "refresh interval")
	cmd.Flags().IntVarP(&count, "count", "n", 0, "stop after this many refreshes (0: until interrupted)")
	return cmd
}

// printTop renders rates from two metrics samples.
func printTop(w io.Writer, name string, prev, cur *qgaproto.Metrics, dt time.Duration) {
	fmt.Fprintf(w, "%s  (%s, up %s)\n", name, cur.Source, humanDuration(time.Duration(cur.UptimeSeconds*float64(time.Second))))
	if cur.CPU != nil && prev.CPU != nil {
		busy, steal := qgaproto.CPUBusy(*prev.CPU, *cur.CPU)
		fmt.Fprintf(w, "CPU      %5.1f%% busy  %4.1f%% steal  (%d CPUs)\n", busy, steal, cur.CPU.CPUs)
	}
	if len(cur.LoadAvg) == 3 {
		fmt.Fprintf(w, "Load     %.2f %.2f %.2f\n", cur.LoadAvg[0], cur.LoadAvg[1], cur.LoadAvg[2])
	}
	if m := cur.Memory; m != nil {
		fmt.Fprintf(w, "Memory   %s used of %s, %s available", bytesHuman(m.UsedBytes), bytesHuman(m.TotalBytes), bytesHuman(m.AvailableBytes))
		if m.SwapTotalBytes > 0 {
			fmt.Fprintf(w, "; swap %s used of %s", bytesHuman(m.SwapTotalBytes-m.SwapFreeBytes), bytesHuman(m.SwapTotalBytes))
		}
		fmt.Fprintln(w)
	}
	for _, fs := range cur.Filesystems {
		fmt.Fprintf(w, "Disk     %-12s %s used of %s\n", fs.Mountpoint, bytesHuman(fs.UsedBytes), bytesHuman(fs.TotalBytes))
	}
	prevNet := map[string]qgaproto.NetworkCounters{}
	for _, n := range prev.Interfaces {
		prevNet[n.Name] = n
	}
	secs := dt.Seconds()
	for _, n := range cur.Interfaces {
		p, ok := prevNet[n.Name]
		if !ok || secs <= 0 {
			continue
		}
		rx := float64(n.RxBytes-p.RxBytes) / secs
		tx := float64(n.TxBytes-p.TxBytes) / secs
		fmt.Fprintf(w, "Net      %-12s rx %s/s  tx %s/s\n", n.Name, bytesHuman(uint64(rx)), bytesHuman(uint64(tx)))
	}
}

func bytesHuman(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%dB", b)
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ci", float64(b)/float64(div), "KMGTPE"[exp])
}

// sleepCtx sleeps d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mbvm/mb/monitor/auth"
	"github.com/mbvm/mb/monitor/service"
)

// monitorCmd is `mb monitor`: the monitor's hosts, alerts, silences and
// notifications, through the daemon (mb.sock) or a monitor's --url.
func (a *app) monitorCmd() *cobra.Command {
	t := &monitorTarget{}
	cmd := &cobra.Command{
		Use:   "monitor",
		Short: "Hosts, alerts, silences and notifications of the monitor",
		Long: `mb monitor talks to the monitor: the one in the mb daemon (over mb.sock,
the default), or a standalone one (mb monitor serve) given with --url;
--user NAME then authenticates with the password in $MB_MONITOR_PASSWORD.
Its configuration is $MB_HOME/monitor.yaml (see the README's Monitoring
section).`,
		Example: `  mb monitor hosts
  mb monitor alerts --all
  mb monitor ack web-01 cpu_monitor.cpu_percent --for 4h --comment "looking"
  mb monitor silence web-01 --for 2h --comment "kernel upgrade"
  mb monitor --url http://mon.example:50004 --user alice hosts`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_ = cmd.Help()
			return usagef("a monitor command is required (see the list above)")
		},
	}
	cmd.PersistentFlags().StringVar(&t.url, "url", "", "a standalone monitor's address, http://HOST:PORT")
	cmd.PersistentFlags().StringVar(&t.user, "user", "", "user for --url (password in $"+monitorPasswordEnv+")")
	cmd.AddCommand(
		a.monitorHostsCmd(t), a.monitorAlertsCmd(t), a.monitorAckCmd(t), a.monitorUnackCmd(t),
		a.monitorSilenceCmd(t), a.monitorHistoryCmd(t), a.monitorNotifyCmd(t), a.monitorReloadCmd(t),
		a.monitorServeCmd(), a.monitorPasswdCmd(), a.monitorOpenCmd(),
	)
	return cmd
}

// argsN checks the number of positional arguments as a usage error.
func argsN(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s needs %s, got %d argument(s) (see `%s --help`)", cmd.CommandPath(), what, len(args), cmd.CommandPath())
		}
		return nil
	}
}

// printJSON writes an API reply as it came (already indented).
func (a *app) printJSON(data []byte) error {
	_, err := a.stdout.Write(data)
	return err
}

func (a *app) monitorHostsCmd(t *monitorTarget) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use: "hosts",
		Example: `  mb monitor hosts
  mb monitor hosts --json | jq '.hosts[] | select(.reachability != "up")'
  mb monitor --url http://mon:50004 --user alice hosts`,
		Short: "List the monitored hosts",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.monitorClient(cmd.Context(), t)
			if err != nil {
				return err
			}
			var reply struct{ Hosts []service.HostJSON }
			data, err := c.get(cmd.Context(), "hosts", &reply)
			if err != nil {
				return err
			}
			if asJSON {
				return a.printJSON(data)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tREACH\tSOURCE\tADDRESS\tLAST SEEN\tRTT\tALERTS")
			for _, h := range reply.Hosts {
				seen, rtt := "-", "-"
				if h.LastSeenAge != nil {
					seen = ago(*h.LastSeenAge)
				}
				if h.RTTMillis != nil {
					rtt = fmt.Sprintf("%.1fms", *h.RTTMillis)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, h.Reachability, dash(strings.Join(h.Sources, ",")),
					dash(h.Address), seen, rtt, alertCounts(h.Alerts))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	return cmd
}

func alertCounts(c service.AlertCounts) string {
	var parts []string
	for _, x := range []struct {
		n    int
		name string
	}{{c.Critical, "critical"}, {c.Unknown, "unknown"}, {c.Warning, "warning"}} {
		if x.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", x.n, x.name))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

func ago(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (a *app) monitorAlertsCmd(t *monitorTarget) *cobra.Command {
	var asJSON, all bool
	cmd := &cobra.Command{
		Use: "alerts [HOST]",
		Example: `  mb monitor alerts
  mb monitor alerts web-01 --all`,
		Short: "List active alerts (--all: OK ones too)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.monitorClient(cmd.Context(), t)
			if err != nil {
				return err
			}
			q := url.Values{}
			if all {
				q.Set("all", "true")
			}
			if len(args) == 1 {
				q.Set("host", args[0])
			}
			path := "alerts"
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			var reply struct{ Alerts []service.AlertJSON }
			data, err := c.get(cmd.Context(), path, &reply)
			if err != nil {
				return err
			}
			if asJSON {
				return a.printJSON(data)
			}
			if len(reply.Alerts) == 0 {
				fmt.Fprintln(a.stdout, "no alerts")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "HOST\tALERT\tLEVEL\tVALUE\tSINCE\tSTATE\tTEXT")
			for _, al := range reply.Alerts {
				value := "-"
				if al.Value != nil {
					value = formatNumber(*al.Value)
				}
				since := "-"
				if !al.Since.IsZero() {
					since = al.Since.Local().Format("01-02 15:04")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", al.Host, al.Name, al.Level, value, since, alertState(al), oneLine(al.Text))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "include alerts that are OK")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	return cmd
}

func alertState(al service.AlertJSON) string {
	var s []string
	if al.Ack != nil && al.Ack.Active {
		s = append(s, "acked by "+al.Ack.By)
	}
	for _, f := range []struct {
		on   bool
		name string
	}{{al.Silenced, "silenced"}, {al.Held, "held"}, {al.Stale, "stale"}, {al.Flapping, "flapping"}} {
		if f.on {
			s = append(s, f.name)
		}
	}
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ", ")
}

func formatNumber(v float64) string {
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d", int64(v))
	}
	return fmt.Sprintf("%.4g", v)
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

func (a *app) monitorAckCmd(t *monitorTarget) *cobra.Command {
	var asJSON bool
	var dur time.Duration
	var comment string
	cmd := &cobra.Command{
		Use:   "ack HOST FIELD",
		Short: "Acknowledge an alert: no re-notifications until it recovers, escalates, or --for ends",
		Long: `ack acknowledges an active alert. FIELD is PLUGIN.FIELD as mb monitor alerts
shows it (cpu_monitor.cpu_percent, disk_monitor.partitions./.percent), or
reachability, or rtt. It is recorded with your user name and the comment.`,
		Example: `  mb monitor ack web-01 cpu_monitor.cpu_percent --for 4h --comment "batch job"`,
		Args:    argsN(2, "HOST and FIELD"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.monitorClient(cmd.Context(), t)
			if err != nil {
				return err
			}
			req := service.AckRequest{Host: args[0], Field: args[1], Comment: comment}
			if dur > 0 {
				req.For = dur.String()
			}
			data, err := c.call(cmd.Context(), "POST", "alerts/acknowledge", req)
			if err != nil {
				return err
			}
			if asJSON {
				return a.printJSON(data)
			}
			until := "until it recovers"
			if dur > 0 {
				until = "for " + dur.String()
			}
			fmt.Fprintf(a.stdout, "acknowledged %s %s %s\n", args[0], args[1], until)
			return nil
		},
	}
	cmd.Flags().DurationVar(&dur, "for", 0, "end the acknowledgement after this long (default: at recovery)")
	cmd.Flags().StringVar(&comment, "comment", "", "why")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	return cmd
}

func (a *app) monitorUnackCmd(t *monitorTarget) *cobra.Command {
	return &cobra.Command{
		Use:     "unack HOST FIELD",
		Example: `  mb monitor unack web-01 cpu_monitor.cpu_percent`,
		Short:   "Remove an alert's acknowledgement",
		Args:    argsN(2, "HOST and FIELD"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.monitorClient(cmd.Context(), t)
			if err != nil {
				return err
			}
			if _, err := c.call(cmd.Context(), "POST", "alerts/unacknowledge", map[string]string{"host": args[0], "field": args[1]}); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "acknowledgement of %s %s removed\n", args[0], args[1])
			return nil
		},
	}
}

// parseTarget splits HOST[/PLUGIN[/FIELD]]; FIELD may hold slashes
// (partitions./.percent).
func parseTarget(s string) (host, plugin, field string, err error) {
	parts := strings.SplitN(s, "/", 3)
	host = parts[0]
	if len(parts) > 1 {
		plugin = parts[1]
	}
	if len(parts) > 2 {
		field = parts[2]
	}
	if host == "" || (len(parts) > 1 && plugin == "") || (len(parts) > 2 && field == "") {
		return "", "", "", usagef("%q: give HOST, HOST/PLUGIN or HOST/PLUGIN/FIELD (patterns with * and ? are fine; * alone is every host)", s)
	}
	return host, plugin, field, nil
}

func (a *app) monitorSilenceCmd(t *monitorTarget) *cobra.Command {
	var asJSON bool
	var dur time.Duration
	var comment, start string
	cmd := &cobra.Command{
		Use:   "silence HOST[/PLUGIN[/FIELD]] --for DURATION",
		Short: "Silence alerts for a maintenance window (ls lists, rm ends one)",
		Long: `silence holds back the notifications of every alert it matches for a while;
alerts still change state, and what is due when the silence ends goes out
then. HOST, PLUGIN and FIELD are patterns: * is any run of characters, ? one.`,
		Example: `  mb monitor silence web-01 --for 2h --comment "kernel upgrade"
  mb monitor silence 'db-*/disk_monitor' --for 30m
  mb monitor silence ls
  mb monitor silence rm 3f2a...`,
		Args: argsN(1, "HOST[/PLUGIN[/FIELD]] (or the subcommand ls or rm)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			host, plugin, field, err := parseTarget(args[0])
			if err != nil {
				return err
			}
			if dur <= 0 {
				return usagef("give --for DURATION (for example --for 2h)")
			}
			req := service.SilenceRequest{Host: host, Plugin: plugin, Field: field, For: dur.String(), Comment: comment}
			if start != "" {
				ts, err := time.Parse(time.RFC3339, start)
				if err != nil {
					return usagef("--start %q: give a time such as 2026-11-26T22:00:00Z", start)
				}
				req.Start = ts
			}
			c, err := a.monitorClient(cmd.Context(), t)
			if err != nil {
				return err
			}
			data, err := c.call(cmd.Context(), "POST", "silences", req)
			if err != nil {
				return err
			}
			if asJSON {
				return a.printJSON(data)
			}
			var reply struct{ Silence service.SilenceJSON }
			if err := jsonUnmarshal(data, &reply); err != nil {
				return err
			}
			s := reply.Silence
			fmt.Fprintf(a.stdout, "silence %s: %s until %s\n", s.ID, args[0], s.End.Local().Format("2006-01-02 15:04"))
			return nil
		},
	}
	cmd.Flags().DurationVar(&dur, "for", 0, "how long (required)")
	cmd.Flags().StringVar(&start, "start", "", "when it starts, RFC 3339 (default now)")
	cmd.Flags().StringVar(&comment, "comment", "", "why")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")

	var lsJSON bool
	ls := &cobra.Command{
		Use: "ls",
		Example: `  mb monitor silence ls
  mb monitor silence ls --json`,
		Short: "List silences not yet ended",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.monitorClient(cmd.Context(), t)
			if err != nil {
				return err
			}
			var reply struct{ Silences []service.SilenceJSON }
			data, err := c.get(cmd.Context(), "silences", &reply)
			if err != nil {
				return err
			}
			if lsJSON {
				return a.printJSON(data)
			}
			if len(reply.Silences) == 0 {
				fmt.Fprintln(a.stdout, "no silences")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tMATCHES\tSTART\tEND\tBY\tCOMMENT")
			for _, s := range reply.Silences {
				m := s.Host
				if s.Plugin != "" || s.Field != "" {
					m += "/" + s.Plugin
				}
				if s.Field != "" {
					m += "/" + s.Field
				}
				st := s.Start.Local().Format("01-02 15:04")
				if s.Active {
					st += " (active)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, m, st, s.End.Local().Format("01-02 15:04"), dash(s.By), oneLine(s.Comment))
			}
			return tw.Flush()
		},
	}
	ls.Flags().BoolVar(&lsJSON, "json", false, "print the API's JSON")
	rm := &cobra.Command{
		Use:     "rm ID",
		Example: `  mb monitor silence rm 1c1f5d54f83b0963`,
		Short:   "End a silence now",
		Args:    argsN(1, "a silence ID (see mb monitor silence ls)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.monitorClient(cmd.Context(), t)
			if err != nil {
				return err
			}
			if _, err := c.call(cmd.Context(), "DELETE", "silences/"+url.PathEscape(args[0]), nil); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "silence %s ended\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(ls, rm)
	return cmd
}

func (a *app) monitorHistoryCmd(t *monitorTarget) *cobra.Command {
	var asJSON bool
	var since time.Duration
	cmd := &cobra.Command{
		Use:     "history HOST FIELD",
		Short:   "Show a field's recent samples and rollups",
		Example: `  mb monitor history web-01 cpu_monitor.cpu_percent --since 1h`,
		Args:    argsN(2, "HOST and FIELD"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if since <= 0 {
				return usagef("--since must be positive (for example --since 1h)")
			}
			c, err := a.monitorClient(cmd.Context(), t)
			if err != nil {
				return err
			}
			q := url.Values{"field": {args[1]}, "since": {since.String()}}
			var reply struct {
				Samples []service.SampleJSON
				Rollups []service.RollupJSON
			}
			data, err := c.get(cmd.Context(), "hosts/"+url.PathEscape(args[0])+"/history?"+q.Encode(), &reply)
			if err != nil {
				return err
			}
			if asJSON {
				return a.printJSON(data)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			if len(reply.Rollups) > 0 {
				fmt.Fprintln(tw, "START\tMIN\tMEAN\tMAX\tLAST\tSAMPLES")
				for _, r := range reply.Rollups {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", r.Start.Local().Format("01-02 15:04"), formatNumber(r.Min), formatNumber(r.Mean), formatNumber(r.Max), formatNumber(r.Last), r.Count)
				}
				fmt.Fprintln(tw)
			}
			fmt.Fprintln(tw, "TIME\tVALUE")
			for _, s := range reply.Samples {
				fmt.Fprintf(tw, "%s\t%s\n", s.Time.Local().Format("15:04:05"), formatNumber(s.Value))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().DurationVar(&since, "since", time.Hour, "how far back")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	return cmd
}

func (a *app) monitorNotifyCmd(t *monitorTarget) *cobra.Command {
	notifyCmd := &cobra.Command{
		Use:     "notify",
		Example: `  mb monitor notify test`,
		Short:   "Notification channels (test sends a test message)",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_ = cmd.Help()
			return usagef("a notify command is required: test")
		},
	}
	var asJSON bool
	test := &cobra.Command{
		Use: "test [CHANNEL]",
		Example: `  mb monitor notify test
  mb monitor notify test ops-email`,
		Short: "Send a test message through every channel (or one) and report each result",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.monitorClient(cmd.Context(), t)
			if err != nil {
				return err
			}
			req := service.NotifyTestRequest{}
			if len(args) == 1 {
				req.Channel = args[0]
			}
			data, err := c.call(cmd.Context(), "POST", "notify/test", req)
			if err != nil {
				return err
			}
			var reply struct {
				Results []struct {
					Channel, Type, Error string
					OK                   bool
					Duration             time.Duration `json:"duration_ns"`
				}
			}
			if err := jsonUnmarshal(data, &reply); err != nil {
				return err
			}
			if asJSON {
				if err := a.printJSON(data); err != nil {
					return err
				}
			} else {
				if len(reply.Results) == 0 {
					fmt.Fprintln(a.stdout, "no notification channels are configured")
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				for _, r := range reply.Results {
					res := "sent"
					if !r.OK {
						res = "FAILED: " + oneLine(r.Error)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Channel, r.Type, r.Duration.Round(time.Millisecond), res)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			failed := 0
			for _, r := range reply.Results {
				if !r.OK {
					failed++
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d channels failed", failed, len(reply.Results))
			}
			return nil
		},
	}
	test.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	notifyCmd.AddCommand(test)
	return notifyCmd
}

func (a *app) monitorReloadCmd(t *monitorTarget) *cobra.Command {
	return &cobra.Command{
		Use:     "reload",
		Example: `  mb monitor reload`,
		Short:   "Reload the monitor's configuration (a bad one is refused and the old one stays)",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.monitorClient(cmd.Context(), t)
			if err != nil {
				return err
			}
			data, err := c.call(cmd.Context(), "POST", "reload", struct{}{})
			if err != nil {
				return err
			}
			var reply struct{ Path string }
			_ = jsonUnmarshal(data, &reply)
			fmt.Fprintf(a.stdout, "reloaded %s\n", reply.Path)
			return nil
		},
	}
}

func (a *app) monitorPasswdCmd() *cobra.Command {
	var iterations int
	cmd := &cobra.Command{
		Use:     "passwd NAME",
		Example: `  mb monitor passwd alice`,
		Short:   "Make a password hash for users.NAME.password in monitor.yaml",
		Long: `passwd reads a password (from the terminal without echo, or the first line of
standard input) and prints its pbkdf2:sha256 hash, the layout hbd passwd
writes, for users.NAME.password in monitor.yaml.`,
		Args: argsN(1, "a user NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, err := a.readPassword(fmt.Sprintf("password for %s: ", args[0]))
			if err != nil {
				return err
			}
			if pw == "" {
				return errors.New("empty password refused")
			}
			h, err := auth.Make(pw, iterations)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s\n", h)
			fmt.Fprintf(a.stderr, "put it in monitor.yaml:\n  users:\n    %s:\n      password: %q\n", args[0], h)
			return nil
		},
	}
	cmd.Flags().IntVar(&iterations, "iterations", auth.DefaultIterations, "PBKDF2 iterations")
	return cmd
}

// readPassword reads a line, without echo when stdin is a terminal.
func (a *app) readPassword(prompt string) (string, error) {
	f, ok := a.stdin.(*os.File)
	if ok && isTerminal(f) {
		fmt.Fprint(a.stderr, prompt)
		restore, err := makeRaw(int(f.Fd()))
		if err != nil {
			return "", err
		}
		var b []byte
		buf := make([]byte, 1)
		for {
			n, err := f.Read(buf)
			if err != nil || n == 0 || buf[0] == '\r' || buf[0] == '\n' {
				break
			}
			if buf[0] == 3 { // ^C
				restore()
				fmt.Fprintln(a.stderr)
				return "", errors.New("interrupted")
			}
			if buf[0] == 127 || buf[0] == 8 {
				if len(b) > 0 {
					b = b[:len(b)-1]
				}
				continue
			}
			b = append(b, buf[0])
		}
		restore()
		fmt.Fprintln(a.stderr)
		return string(b), nil
	}
	line, err := bufio.NewReader(a.stdin).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", fmt.Errorf("reading the password from standard input: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// jsonUnmarshal decodes an API reply.
func jsonUnmarshal(data []byte, out any) error {
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("monitor reply: %w", err)
	}
	return nil
}

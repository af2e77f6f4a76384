package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/mbvm/mb/agent"
	"github.com/mbvm/mb/agent/heartbeat"
	"github.com/mbvm/mb/agent/register"
)

// daemonEnv marks the detached child of `mb-agent heartbeat -d`.
const daemonEnv = "MB_AGENT_HEARTBEAT_DAEMON"

// runHeartbeat is `mb-agent heartbeat`: hbc's command line.
func runHeartbeat(args []string, stderr io.Writer) int {
	fs := pflag.NewFlagSet("mb-agent heartbeat", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: mb-agent heartbeat [flags] SERVER[:PORT]...\n\n"+
			"Sends hbd heartbeats (UDP, port 50003 by default) and plugin data to every address of\n"+
			"every server, as hbc does. Config: -c FILE, else ~/.hbc.json or ~/.hbc.yaml (hbc's keys:\n"+
			"hb_port, interval, owner, plugins; and hmac_key, or $%s).\n"+
			"example: mb-agent heartbeat -b monitor.example.com\n\n", heartbeat.KeyEnv)
		fs.PrintDefaults()
	}
	boot := fs.BoolP("boot", "b", false, "send a boot message with the first heartbeat and a shutdown message when stopped")
	cfgPath := fs.StringP("config", "c", "", "config file, JSON or YAML (default ~/.hbc.json, then ~/.hbc.yaml)")
	daemon := fs.BoolP("daemon", "d", false, "run in the background, logging to syslog")
	message := fs.StringP("message", "m", "", "send this one-off message to the servers and exit")
	name := fs.StringP("name", "n", "", "host name to report (default: this machine's hostname)")
	verbose := fs.BoolP("verbose", "v", false, "verbose output")
	debug := fs.CountP("debug", "x", "debug output (repeatable)")
	only4 := fs.BoolP("ipv4", "4", false, "use IPv4 addresses only")
	only6 := fs.BoolP("ipv6", "6", false, "use IPv6 addresses only")
	interval := &register.SecondsFlag{}
	fs.Var(interval, "interval", "heartbeat interval, overriding the config's: seconds, or a duration")
	allowCmd := fs.Bool("allow-commands", false, "obey CMD from the server (only when signed with hmac_key)")
	allowUpd := fs.Bool("allow-update", false, "obey UPD (self-update) from the server (only when signed with hmac_key)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "mb-agent heartbeat: %v (see --help)\n", err)
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintf(stderr, "mb-agent heartbeat: name at least one server, for example: mb-agent heartbeat monitor.example.com\n")
		return 2
	}
	if *only4 && *only6 {
		fmt.Fprintf(stderr, "mb-agent heartbeat: -4 and -6 exclude each other\n")
		return 2
	}
	if *daemon && os.Getenv(daemonEnv) != "1" && *message == "" {
		return detach(stderr)
	}
	level := slog.LevelInfo
	if *verbose || *debug > 0 {
		level = slog.LevelDebug
	}
	var out io.Writer = stderr
	if os.Getenv(daemonEnv) == "1" {
		if w, err := syslogWriter(); err == nil {
			out = w
		}
	}
	logger := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level})).With("component", "mb-agent-heartbeat")
	cfg, err := heartbeat.LoadConfig(*cfgPath, logger)
	if err != nil {
		fmt.Fprintf(stderr, "mb-agent heartbeat: %v\n", err)
		return 2
	}
	if cfg.Key == "" {
		cfg.Key = os.Getenv(heartbeat.KeyEnv)
	}
	if interval.D > 0 {
		cfg.Interval = interval.D
	}
	family := 0
	if *only4 {
		family = 4
	} else if *only6 {
		family = 6
	}
	c, err := heartbeat.New(heartbeat.Options{
		Servers: fs.Args(), Config: cfg, Name: *name, Boot: *boot, Family: family,
		AllowCommands: *allowCmd, AllowUpdate: *allowUpd, Version: agent.Version, Logger: logger,
	})
	if err != nil {
		fmt.Fprintf(stderr, "mb-agent heartbeat: %v\n", err)
		return 2
	}
	setProcName()
	lean()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *message != "" {
		if err := c.SendMessage(ctx, *message, 5*time.Second); err != nil {
			fmt.Fprintf(stderr, "mb-agent heartbeat: %v\n", err)
			return 1
		}
		return 0
	}
	if err := c.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "mb-agent heartbeat: %v\n", err)
		return 1
	}
	return 0
}

// detach starts this command again in a new session, in the background,
// and returns at once.
func detach(stderr io.Writer) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "mb-agent heartbeat: -d: find my own binary: %v\n", err)
		return 1
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		fmt.Fprintf(stderr, "mb-agent heartbeat: -d: %v\n", err)
		return 1
	}
	defer devnull.Close()
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), daemonEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "mb-agent heartbeat: -d: start in the background: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "mb-agent heartbeat: running in the background, PID %d, logging to syslog\n", cmd.Process.Pid)
	_ = cmd.Process.Release()
	return 0
}

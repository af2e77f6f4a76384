package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mbvm/mb/agent/socktop"
)

// defaultTLSDir keeps the socktop server's certificate when TLS is asked
// for with SOCKTOP_ENABLE_SSL and no directory is given.
const defaultTLSDir = "/var/lib/mb-agent/socktop-tls"

// socktopOpts are the socktop server's flags, shared by the agent role
// (prefixed socktop-) and the socktop subcommand.
type socktopOpts struct {
	token, tlsDir                      *string
	metricsTTL, processesTTL, disksTTL *time.Duration
}

func socktopFlags(fs *flag.FlagSet, prefix string) *socktopOpts {
	return &socktopOpts{
		token:        fs.String(prefix+"token", "", "require this token (?token=) from socktop clients (default: $SOCKTOP_TOKEN)"),
		tlsDir:       fs.String(prefix+"tls-dir", "", "serve TLS with a self-signed certificate kept in this directory, made on first start (SOCKTOP_ENABLE_SSL=1 uses "+defaultTLSDir+")"),
		metricsTTL:   fs.Duration(prefix+"metrics-ttl", 0, "cache metrics this long (default 250ms, or $SOCKTOP_AGENT_METRICS_TTL_MS)"),
		processesTTL: fs.Duration(prefix+"processes-ttl", 0, "cache the process list this long (default 1s, or $SOCKTOP_AGENT_PROCESSES_TTL_MS)"),
		disksTTL:     fs.Duration(prefix+"disks-ttl", 0, "cache disks this long (default 1s, or $SOCKTOP_AGENT_DISKS_TTL_MS)"),
	}
}

// server builds the socktop server from the flags, socktop's environment
// variables filling what the flags leave unset.
func (o *socktopOpts) server(logger *slog.Logger) (*socktop.Server, error) {
	env, err := socktop.ReadEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	pick := func(flag, env time.Duration) time.Duration {
		if flag > 0 {
			return flag
		}
		return env
	}
	opts := socktop.Options{
		Token:        *o.token,
		TLSDir:       *o.tlsDir,
		MetricsTTL:   pick(*o.metricsTTL, env.MetricsTTL),
		ProcessesTTL: pick(*o.processesTTL, env.ProcessesTTL),
		DisksTTL:     pick(*o.disksTTL, env.DisksTTL),
		Logger:       logger,
	}
	if opts.Token == "" {
		opts.Token = env.Token
	}
	if opts.TLSDir == "" && env.EnableSSL {
		opts.TLSDir = defaultTLSDir
	}
	return socktop.New(opts)
}

// runSocktop is `mb-agent socktop`: the socktop server alone.
func runSocktop(args []string) int {
	fs := flag.NewFlagSet("mb-agent socktop", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: mb-agent socktop [--listen ADDR] [--token T] [--tls-dir DIR]\n\nServes socktop's metrics protocol (ws://ADDR/ws) and nothing else.\n\n")
		fs.PrintDefaults()
	}
	listen := fs.String("listen", fmt.Sprintf(":%d", socktop.DefaultPort), "address to listen on")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	o := socktopFlags(fs, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "mb-agent socktop: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	logger, ok := newLogger(*logLevel)
	if !ok {
		return 2
	}
	srv, err := o.server(logger)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mb-agent socktop: %v\n", err)
		return 2
	}
	if fp := srv.Fingerprint(); fp != "" {
		fmt.Fprintf(os.Stderr, "mb-agent socktop: TLS certificate SHA-256 fingerprint %s\n", fp)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := srv.ListenAndServe(ctx, *listen); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(os.Stderr, "mb-agent socktop: %v\n", err)
		return 1
	}
	return 0
}

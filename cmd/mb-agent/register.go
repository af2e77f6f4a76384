package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/mbvm/mb/agent/register"
)

// lean keeps a reporter's memory small: it idles between sends, so
// collecting garbage often costs little, and a soft limit holds the heap
// down when a burst (a large plugin result) grew it.
func lean() {
	debug.SetGCPercent(20)
	debug.SetMemoryLimit(4 << 20)
}

// registerTokenEnv holds the registration token when --token is not given.
const registerTokenEnv = "MB_REGISTER_TOKEN"

// runRegister is `mb-agent register`: the VM Tracker client. Its flags are
// the tracker client's, with one or two dashes.
func runRegister(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("mb-agent register", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: mb-agent register --api URL [--interface IF] [--interval 30] [--retry 5] [--token T] [--verbose]\n\n"+
			"Registers this machine's hostname and the interface's IPv4 address with a VM Tracker\n"+
			"server (POST URL/api/register) every interval. -interval and -retry take whole seconds\n"+
			"or durations such as 1m. The first registration is tried 3 times, then mb-agent exits 1.\n"+
			"example: mb-agent register --api http://monitor:8080 --interface eth0\n\n")
		fs.PrintDefaults()
	}
	api := fs.String("api", "", "the server's base URL, such as http://monitor:8080 (required)")
	iface := fs.String("interface", "eth0", "network interface whose first IPv4 address is registered")
	interval := &register.SecondsFlag{D: register.DefaultInterval}
	retry := &register.SecondsFlag{D: register.DefaultRetry}
	fs.Var(interval, "interval", "time between registrations: seconds, or a duration")
	fs.Var(retry, "retry", "wait between attempts of the first registration, and between looks for a missing interface")
	token := fs.String("token", os.Getenv(registerTokenEnv), "send Authorization: Bearer TOKEN (the server's register_token; default $"+registerTokenEnv+", which other users cannot read in ps)")
	verbose := fs.Bool("verbose", false, "log every registration")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mb-agent register: unexpected argument %q (flags only; see --help)\n", fs.Arg(0))
		return 2
	}
	if *api == "" {
		fmt.Fprintf(stderr, "mb-agent register: --api is required, for example --api http://monitor:8080\n")
		return 2
	}
	if err := register.CheckAPI(*api); err != nil {
		fmt.Fprintf(stderr, "mb-agent register: %v\n", err)
		return 2
	}
	setProcName()
	lean()
	logger := slog.New(slog.NewTextHandler(stderr, nil)).With("component", "mb-agent-register")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err := register.Run(ctx, register.Options{
		API: *api, Interface: *iface, Interval: interval.D, Retry: retry.D,
		Token: *token, Verbose: *verbose, Logger: logger,
	})
	if err != nil {
		fmt.Fprintf(stderr, "mb-agent register: %v\n", err)
		return 1
	}
	return 0
}

// Command mb-agent is mb's guest agent. As PID 1 of the mini image it runs
// the init role (package guestinit), which starts mb-agent again as its
// child in the agent role. Anywhere else it runs the agent role only (package
// agent): an ordinary service of the distribution's init that speaks the
// QEMU guest agent protocol on the virtio-serial port or on vsock.
//
// The agent role also serves a command socket for programs in the guest
// (--command-socket; `mb-agent send JSON` is its client) and, when asked,
// socktop's metrics protocol (--socktop-listen; `mb-agent socktop` runs only
// that server).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/mbvm/mb/agent"
	"github.com/mbvm/mb/agent/cmdsock"
	"github.com/mbvm/mb/agent/guestinit"
	"github.com/mbvm/mb/agent/guestmsg"
	"github.com/mbvm/mb/agent/vsockrelay"
)

// agentGCPercent is the agent role's GOGC.
const agentGCPercent = 20

func main() {
	if os.Getpid() == 1 {
		// The kernel passes unknown command line words as arguments; PID 1
		// must not fail on them, so it parses none.
		guestinit.Run(guestinit.Options{})
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 {
		switch args[0] {
		case "send":
			return runSend(args[1:], os.Stdin, os.Stdout, os.Stderr)
		case "socktop":
			return runSocktop(args[1:])
		case "register":
			return runRegister(args[1:], os.Stderr)
		case "heartbeat":
			return runHeartbeat(args[1:], os.Stderr)
		}
	}
	fs := flag.NewFlagSet("mb-agent", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: mb-agent [flags]          the guest agent (QGA), the command socket, optionally socktop\n"+
			"       mb-agent send JSON|-      send one request to the command socket, exit with its Status\n"+
			"       mb-agent socktop [flags]  serve socktop's metrics protocol only\n"+
			"       mb-agent register --api URL [flags]  register with a VM Tracker server (mb's monitor) every interval\n"+
			"       mb-agent heartbeat [flags] SERVER...  send hbd heartbeats and plugin data (hbc's command line)\n\nflags:\n")
		fs.PrintDefaults()
	}
	role := fs.String("role", "agent", "agent (the guest agent service); the init role runs automatically when mb-agent is PID 1")
	device := fs.String("device", "", "virtio-serial port to serve (default: the port named org.qemu.guest_agent.0)")
	vsockPort := fs.Int("vsock-port", 0, "listen on this vsock port instead of the virtio-serial port")
	relayPort := fs.Int("relay-vsock-port", 0, "also run the port relay of the applevirt backend on this vsock port (1025): the host's forwarded connections reach 127.0.0.1 in the guest through it")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	cmdSock := fs.String("command-socket", cmdsock.DefaultPath, "serve the command socket for guest programs here (\"\" turns it off)")
	cmdGroup := fs.String("command-group", "", "group (name or gid) whose members may use the command socket, besides root")
	st := socktopFlags(fs, "socktop-")
	stListen := fs.String("socktop-listen", "", "also serve socktop's metrics protocol on this address (for example :3000); off when empty")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	logger, ok := newLogger(*logLevel)
	if !ok {
		return 2
	}
	if *role != "agent" {
		fmt.Fprintf(os.Stderr, "mb-agent: --role=%s: only the agent role can be asked for; the init role runs when mb-agent is started as PID 1\n", *role)
		return 2
	}
	setProcName()
	// A guest's memory is the user's: collect garbage at a fifth of the
	// default heap growth (the agent's live heap is a few hundred KB, so a
	// collection costs little), which keeps a polled socktop server's heap
	// near 1.8 MB instead of 2.5 MB at GOGC 50.
	debug.SetGCPercent(agentGCPercent)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go releaseIdleMemory(ctx)
	if *relayPort != 0 {
		if err := startRelay(ctx, *relayPort, logger); err != nil {
			logger.Error("port relay not started", "err", err)
			return 1
		}
	}
	var queue *guestmsg.Queue
	if *cmdSock != "" {
		queue = guestmsg.NewQueue(0)
		if err := startCommandSocket(ctx, *cmdSock, *cmdGroup, queue, logger); err != nil {
			fmt.Fprintf(os.Stderr, "mb-agent: %v\n", err)
			return 2
		}
	}
	if *stListen != "" {
		srv, err := st.server(logger)
		if err != nil {
			fmt.Fprintf(os.Stderr, "mb-agent: %v\n", err)
			return 2
		}
		go func() {
			if err := srv.ListenAndServe(ctx, *stListen); err != nil && !errors.Is(err, context.Canceled) {
				logger.Error("socktop server stopped", "err", err)
			}
		}()
	}
	err := agent.Serve(ctx, agent.Options{
		VsockPort: *vsockPort,
		Device:    *device,
		Logger:    logger,
		PID1:      os.Getenv(guestinit.EnvPID1) == "1",
		Messages:  queue,
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		logger.Error("agent stopped", "err", err)
		return 1
	}
	return 0
}

// startRelay listens on the relay's vsock port (accepting the host only)
// and serves it until ctx ends.
func startRelay(ctx context.Context, port int, logger *slog.Logger) error {
	l, err := vsockrelay.ListenVsock(port, vsockrelay.HostCID)
	if err != nil {
		return err
	}
	log := logger.With("component", "vsock-relay")
	log.Info("serving the port relay", "vsock_port", port)
	go func() {
		if err := vsockrelay.Serve(ctx, l, vsockrelay.Options{Logger: log}); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("port relay stopped", "err", err)
		}
	}()
	return nil
}

// newLogger returns the text logger at the named level, or reports a bad
// level on stderr.
func newLogger(name string) (*slog.Logger, bool) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(name)); err != nil {
		fmt.Fprintf(os.Stderr, "mb-agent: bad --log-level %q: use debug, info, warn or error\n", name)
		return nil, false
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("component", "mb-agent"), true
}

// startCommandSocket registers mb-agent's handlers and serves them on the
// socket at path until ctx ends. A group that does not exist is an error;
// a socket that cannot be created is logged and leaves the agent running
// without it.
func startCommandSocket(ctx context.Context, path, group string, q *guestmsg.Queue, logger *slog.Logger) error {
	reg := cmdsock.NewRegistry()
	if err := guestmsg.Register(reg, q, agent.Version); err != nil {
		return err
	}
	srv, err := cmdsock.NewServer(reg, cmdsock.Options{Path: path, Group: group, Logger: logger})
	if err != nil {
		return fmt.Errorf("--command-group: %w", err)
	}
	go func() {
		if err := srv.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			logger.Error("command socket stopped", "err", err)
		}
	}()
	return nil
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/mbvm/mb/agent/cmdsock"
)

// runSend is `mb-agent send JSON`: it sends JSON (or stdin, for "-"),
// unchanged, to the
// command socket, prints the reply and exits with the reply's Status
// (clamped to 0..255; a negative one is 255). It exits 103 when the socket
// cannot be reached and 106 when the reply has no Status.
func runSend(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mb-agent send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: mb-agent send [--socket PATH] JSON|-\n\nSends one request (\"-\": read it from stdin) to mb-agent's command socket,\nprints the reply, exits with its Status.\nexample: mb-agent send '{\"Command\":\"mb.ready\",\"name\":\"web\"}'\n\n")
		fs.PrintDefaults()
	}
	path := fs.String("socket", cmdsock.DefaultPath, "the command socket")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req := []byte(fs.Arg(0))
	if fs.Arg(0) == "-" {
		var err error
		if req, err = io.ReadAll(io.LimitReader(stdin, 2*cmdsock.MaxRequest)); err != nil {
			fmt.Fprintf(stderr, "mb-agent send: reading the request from stdin: %v\n", err)
			return 2
		}
	}
	reply, err := cmdsock.Send(ctx, *path, req)
	if len(reply) > 0 {
		fmt.Fprintf(stdout, "%s\n", reply)
	}
	if err != nil && len(reply) == 0 {
		fmt.Fprintf(stderr, "mb-agent send: %v\n", err)
		return cmdsock.CodeConn
	}
	status, err := cmdsock.StatusOf(reply)
	if err != nil {
		fmt.Fprintf(stderr, "mb-agent send: %v\n", err)
		return cmdsock.CodeInternal
	}
	if status < 0 || status > 255 {
		return 255
	}
	return status
}

// Command darwincheck type-checks mb's packages as they build for macOS with
// cgo, on any OS. `go vet` run with GOOS=darwin has CGO_ENABLED=0 and so
// skips every file that needs cgo, such as the Apple Virtualization backend's
// vz adapter; this tool lists the packages with `go list -deps -json`
// (GOOS=darwin, CGO_ENABLED=1: listing needs no C compiler) and checks them
// with go/types, faking the C package. Only errors in the main module's
// packages are reported.
//
// Usage: darwincheck [-arch arm64,amd64] [packages]   (default ./...)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("darwincheck", flag.ContinueOnError)
	archs := fs.String("arch", "arm64,amd64", "comma-separated GOARCH values to check")
	goos := fs.String("os", "darwin", "GOOS to check")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	patterns := fs.Args()
	if len(patterns) == 0 {
		patterns = []string{"./..."}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	failed := false
	for _, arch := range strings.Split(*archs, ",") {
		diags, err := Check(ctx, Options{Dir: ".", GOOS: *goos, GOARCH: arch, Patterns: patterns})
		if err != nil {
			fmt.Fprintf(os.Stderr, "darwincheck: %v\n", err)
			return 1
		}
		cwd, _ := os.Getwd()
		for _, d := range diags {
			if rel, err := filepath.Rel(cwd, d.Pos.Filename); err == nil && !strings.HasPrefix(rel, "..") {
				d.Pos.Filename = rel
			}
			fmt.Fprintf(os.Stderr, "%s (%s/%s)\n", d, *goos, arch)
		}
		if len(diags) > 0 {
			failed = true
		}
	}
	if failed {
		return 1
	}
	return 0
}

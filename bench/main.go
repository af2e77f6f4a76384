// Command bench is `make bench`: it measures mb against its performance
// targets on this machine with the real programs (vmhost, the daemon, the
// mb command line, QEMU and the mini image), prints a Markdown table and
// writes bench/results.json and bench/RESULTS.md.
//
// Every comparison runs both sides alternately in one run, at least five
// runs each, and reports the median with the min–max spread. A part whose
// dependency is missing (no image, no CLI) reports "not measured" and why,
// never a number. BENCH_QUICK=1 runs each part once at small sizes.
//
//	go run ./bench                 # full run, writes bench/results.json and bench/RESULTS.md
//	BENCH_QUICK=1 go run ./bench   # quick run
//	go run ./bench -out /tmp/b     # write the files elsewhere
//	go run ./bench -parts control  # only some parts (start,stop,control,scale,density,agent,fleet,fleetagent,dashboard,monitor,daily,warm,warmdebian)
//
// BENCH_SRC=DIR builds the measured binaries from another checkout of the
// module (for example an export of a commit) instead of this one.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mbvm/mb/bench/rig"
)

func main() {
	out := flag.String("out", "", "directory for results.json and RESULTS.md (default: bench/ in the repository)")
	only := flag.String("parts", "", "comma-separated parts to run (start,stop,control,scale,density,agent,fleet,fleetagent,dashboard,monitor,daily,warm,warmdebian); default all")
	cycles := flag.Int("cycles", 0, "start/stop cycles of the start/stop part (default 20, quick 4: one per stop row in turn)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	cfg := configFromEnv()
	if *cycles > 0 {
		cfg.stopRuns = *cycles
	}
	if *only != "" {
		cfg.parts = strings.Split(*only, ",")
	}
	rep, err := run(ctx, cfg, log)
	if err != nil {
		log.Error("benchmark failed", "err", err)
		os.Exit(1)
	}
	dir := *out
	if dir == "" {
		root, err := rig.ModuleRoot(".")
		if err != nil {
			log.Error("find the repository", "err", err)
			os.Exit(1)
		}
		dir = filepath.Join(root, "bench")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Error("make the output directory", "err", err)
		os.Exit(1)
	}
	if err := rep.write(dir); err != nil {
		log.Error("write results", "err", err)
		os.Exit(1)
	}
	fmt.Printf("\nMachine: %s\n\n%s\nWrote %s and %s\n", rep.Machine.Markdown(), rep.Markdown(),
		filepath.Join(dir, "results.json"), filepath.Join(dir, "RESULTS.md"))
}

// config holds the sizes of a run.
type config struct {
	quick bool
	parts []string // empty: all
	// runs is the number of runs per side of a comparison.
	runs int
	// stopRuns is the number of start/stop cycles of the start/stop part;
	// the stop variants take turns, so each stop row gets a quarter.
	stopRuns int
	// controlRequests is the number of status calls per client per run.
	controlRequests int
	fakeVMs         int
	densityVMs      int
	idle            time.Duration
	execRuns        int
}

func configFromEnv() config {
	if os.Getenv("BENCH_QUICK") == "1" {
		return config{quick: true, runs: 1, stopRuns: len(stopVariants), controlRequests: 200, fakeVMs: 20, densityVMs: 2,
			idle: 10 * time.Second, execRuns: 5}
	}
	return config{runs: 5, stopRuns: 5 * len(stopVariants), controlRequests: 2000, fakeVMs: 200, densityVMs: 8,
		idle: 60 * time.Second, execRuns: 20}
}

func (c config) wants(part string) bool {
	if len(c.parts) == 0 {
		return true
	}
	for _, p := range c.parts {
		if strings.TrimSpace(p) == part {
			return true
		}
	}
	return false
}

// env is what every part gets: the binaries, the image and a scratch
// directory.
type env struct {
	cfg    config
	log    *slog.Logger
	root   string
	bins   *rig.Binaries
	img    *rig.Image
	imgErr error
	work   string
	// accel is set by the first VM part from what vmhost reports.
	accel string
}

// part is one section of the benchmark.
type part struct {
	name string
	rows []rowDef
	run  func(ctx context.Context, e *env, r *results) error
}

func allParts() []part {
	return []part{startStopPart(), controlPart(), scalePart(), densityPart(), agentPart(), fleetPart(), fleetAgentPart(), dashboardPart(), monitorPart(), dailyPart(), warmPart(), warmDebianPart()}
}

// run builds the binaries and runs every part, in order.
func run(ctx context.Context, cfg config, log *slog.Logger) (*Report, error) {
	began := time.Now()
	root, err := rig.ModuleRoot(".")
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("/tmp", "mbb")
	if err != nil {
		return nil, fmt.Errorf("make a scratch directory: %w", err)
	}
	defer os.RemoveAll(work)
	src := root
	if s := os.Getenv("BENCH_SRC"); s != "" {
		src = s
	}
	log.Info("building mb and vmhost", "src", src, "dir", work)
	bins := rig.Build(ctx, src, filepath.Join(work, "bin"))
	e := &env{cfg: cfg, log: log, root: root, bins: bins, work: work}
	e.img, e.imgErr = rig.FindImage("mini")

	rep := &Report{Date: began.UTC(), Quick: cfg.quick, Machine: describeMachine(ctx)}
	rep.Revision, rep.Dirty = gitRevision(ctx, src)
	for _, p := range allParts() {
		r := newResults(p.name, p.rows)
		reason := "part skipped (-parts)"
		if cfg.wants(p.name) || (p.name == "start/stop" && (cfg.wants("start") || cfg.wants("stop"))) {
			log.Info("part starting", "part", p.name)
			t0 := time.Now()
			err := p.run(ctx, e, r)
			reason = "part did not produce this row"
			if err != nil {
				reason = err.Error()
				log.Warn("part incomplete", "part", p.name, "err", err)
			}
			log.Info("part done", "part", p.name, "seconds", time.Since(t0).Round(time.Second).Seconds())
		}
		rep.Rows = append(rep.Rows, r.finish(reason)...)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("benchmark interrupted: %w", ctx.Err())
		}
	}
	if e.accel != "" {
		rep.Machine.Accelerator = e.accel
	}
	rep.Machine.LoadEnd = loadAverage()
	rep.DurationSeconds = time.Since(began).Seconds()
	return rep, nil
}

// needVMHost returns an error when vmhost did not build.
func (e *env) needVMHost() error {
	if e.bins.VMHostErr != nil {
		return fmt.Errorf("vmhost did not build: %w", e.bins.VMHostErr)
	}
	return nil
}

// needMB returns an error when the CLI or vmhost did not build.
func (e *env) needMB() error {
	if err := e.needVMHost(); err != nil {
		return err
	}
	if e.bins.MBErr != nil {
		return fmt.Errorf("the mb CLI did not build: %w", e.bins.MBErr)
	}
	return nil
}

// needImage returns an error when the mini image is missing.
func (e *env) needImage() error {
	if e.imgErr != nil {
		return fmt.Errorf("no mini image: %w", e.imgErr)
	}
	if _, err := os.Stat("/usr/bin/qemu-system-x86_64"); err != nil {
		if _, err2 := os.Stat("/usr/local/bin/qemu-system-x86_64"); err2 != nil {
			return fmt.Errorf("qemu-system-x86_64 not installed (run make deps)")
		}
	}
	return nil
}

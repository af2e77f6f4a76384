// Package process is the vmhost program: it locks the VM directory, reads
// the spec, starts the backend, serves vmhost.sock, handles signals and
// writes exit.json when the VM ends. cmd/vmhost only parses flags and calls
// Run, so tests can drive the whole process from here.
package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/internal/lockfile"
	"github.com/mbvm/mb/vm/spec"
	"github.com/mbvm/mb/vmhost"
)

// Exit codes of the vmhost process.
const (
	ExitClean   = 0 // the VM stopped cleanly
	ExitCrashed = 1 // the VM crashed
	ExitFailed  = 2 // vmhost could not start the VM
)

// Config is what cmd/vmhost parsed.
type Config struct {
	// Dir is the VM directory.
	Dir string
	// Home is $MB_HOME, used to find images.
	Home string
	// Backend overrides spec.Backend when set.
	Backend string
	// Override changes single spec fields; it runs after spec.yaml is read
	// (or on a spec named after Dir when there is no spec.yaml).
	Override func(*spec.Spec) error
	Logger   *slog.Logger
}

// Run runs one VM to its end and returns the process exit code.
func Run(ctx context.Context, cfg Config) int {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	started := time.Now()
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		log.Error("bad VM directory", "dir", cfg.Dir, "err", err)
		return ExitFailed
	}
	// Refuse a directory another user owns or may write into: they could
	// have planted the spec it runs, or links for it to write through.
	if err := layout.EnsureDir(dir); err != nil {
		log.Error("cannot use the VM directory", "dir", dir, "err", err)
		return ExitFailed
	}
	lock, err := lockfile.Acquire(filepath.Join(dir, vmhost.LockName))
	if err != nil {
		var held *lockfile.HeldError
		if errors.As(err, &held) {
			log.Error(fmt.Sprintf("another vmhost already runs this VM: %v (stop it first, or use another --dir)", held), "dir", dir)
		} else {
			log.Error("cannot lock the VM directory", "err", err)
		}
		return ExitFailed
	}
	defer lock.Release()
	// A record from an earlier run is not about this one; a kill -9 of this
	// vmhost must leave no record at all.
	_ = os.Remove(filepath.Join(dir, vmhost.ExitRecordName))

	record := func(code int, stoppedBy, reason string) {
		rec := vmhost.ExitRecord{Time: time.Now().UTC(), StartedAt: started.UTC(), PID: os.Getpid(),
			ExitCode: code, StoppedBy: stoppedBy, Crashed: code != ExitClean, Reason: reason}
		if err := vmhost.WriteExitRecord(dir, rec); err != nil {
			log.Error("cannot write exit record", "err", err)
		}
	}

	sp, err := loadSpec(dir, cfg)
	if err != nil {
		log.Error("bad VM spec", "err", err)
		record(ExitFailed, "", err.Error())
		return ExitFailed
	}
	log = log.With("vm", sp.Name)

	vm, err := startBackend(ctx, dir, cfg.Home, sp, log)
	if err != nil {
		log.Error("cannot start the VM", "backend", sp.Backend, "err", err)
		record(ExitFailed, "", err.Error())
		return ExitFailed
	}
	log.Info("VM started", "backend", vm.ctrl.Backend(), "ssh_port", vm.ctrl.SSHPort())

	sigCtx, stopSignals := context.WithCancel(context.Background())
	defer stopSignals()
	go handleSignals(sigCtx, vm, sp.StopTimeout.D(), log)

	srv := vmhost.NewServer(filepath.Join(dir, vmhost.SocketName), filepath.Join(dir, vmhost.PIDName), vm.ctrl,
		slog.NewLogLogger(log.Handler(), slog.LevelInfo))
	if err := srv.Run(context.Background()); err != nil {
		log.Error("control socket failed; stopping the VM", "err", err)
		fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = vm.ctrl.ForceStop(fctx)
		cancel()
		_ = vm.ctrl.Wait()
		record(ExitFailed, "", "control socket: "+err.Error())
		return ExitFailed
	}
	waitErr := vm.ctrl.Wait()
	stoppedBy := ""
	if r, ok := vm.ctrl.(vmhost.StoppedByReporter); ok {
		stoppedBy = r.StoppedBy()
	}
	if waitErr != nil {
		log.Error("VM crashed", "err", waitErr)
		record(ExitCrashed, stoppedBy, waitErr.Error())
		return ExitCrashed
	}
	log.Info("VM stopped", "stopped_by", stoppedBy)
	record(ExitClean, stoppedBy, "")
	return ExitClean
}

// handleSignals stops the VM gracefully on the first SIGTERM or SIGINT and
// forces it on the second. SIGUSR1 asks a backend that supports it (the
// fake) to simulate a crash.
func handleSignals(ctx context.Context, vm *runningVM, timeout time.Duration, log *slog.Logger) {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	defer signal.Stop(ch)
	stopping := false
	for {
		select {
		case <-ctx.Done():
			return
		case sig := <-ch:
			switch {
			case sig == syscall.SIGUSR1:
				if vm.crash != nil {
					log.Warn("SIGUSR1: simulating a crash")
					vm.crash("SIGUSR1")
				} else {
					log.Info("SIGUSR1 ignored: the backend cannot simulate a crash")
				}
			case !stopping:
				stopping = true
				log.Info("signal: stopping the VM gracefully (send it again to force)", "signal", sig.String(), "timeout", timeout)
				go func() {
					sctx, cancel := context.WithTimeout(context.Background(), timeout+10*time.Second)
					defer cancel()
					if err := vm.ctrl.Stop(sctx, timeout); err != nil {
						log.Error("graceful stop failed", "err", err)
					}
				}()
			default:
				log.Warn("second signal: forcing the VM off", "signal", sig.String())
				go func() {
					fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					if err := vm.ctrl.ForceStop(fctx); err != nil {
						log.Error("force stop failed", "err", err)
					}
				}()
			}
		}
	}
}

// loadSpec reads dir/spec.yaml when it exists, or starts from a spec named
// after the directory, then applies the overrides, defaults and checks.
func loadSpec(dir string, cfg Config) (*spec.Spec, error) {
	var sp *spec.Spec
	data, err := os.ReadFile(filepath.Join(dir, spec.FileName))
	switch {
	case err == nil:
		sp, err = spec.Parse(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, spec.FileName), err)
		}
	case errors.Is(err, os.ErrNotExist):
		sp = &spec.Spec{Name: filepath.Base(dir)}
	default:
		return nil, fmt.Errorf("read spec: %w", err)
	}
	if cfg.Backend != "" {
		sp.Backend = cfg.Backend
	}
	if cfg.Override != nil {
		if err := cfg.Override(sp); err != nil {
			return nil, err
		}
	}
	sp.SetDefaults()
	if err := sp.Validate(); err != nil {
		return nil, err
	}
	return sp, nil
}

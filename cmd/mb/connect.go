package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mbvm/mb/daemon"
	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/internal/logfile"
)

// daemonStartTimeout bounds the wait for an auto-started daemon.
const daemonStartTimeout = 60 * time.Second

// mbHome returns $MB_HOME (default ~/.mb), created with mode 0700.
func mbHome() (string, error) {
	h, err := layout.Dir()
	if err != nil {
		return "", err
	}
	if err := layout.EnsureHome(h); err != nil {
		return "", err
	}
	return h, nil
}

// connect returns a client of a daemon that answers, starting one (with
// the same $MB_HOME) when autostart and none answers.
func connect(ctx context.Context, autostart bool) (*api.Client, error) {
	h, err := mbHome()
	if err != nil {
		return nil, err
	}
	c := api.NewClient(daemon.SocketPath(h))
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = c.Ping(pctx)
	cancel()
	if err == nil {
		return c, nil
	}
	if !autostart {
		return nil, fmt.Errorf("the mb daemon is not running at %s: start it with `mb daemon`", c.Socket())
	}
	exited, err := spawnDaemon(h)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(daemonStartTimeout)
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = c.Ping(pctx)
		cancel()
		if err == nil {
			return c, nil
		}
		select {
		case code := <-exited:
			// Another daemon may have won the race for the lock; if so it
			// answers shortly. Otherwise the log says what went wrong.
			exited = nil
			if code != 0 {
				time.Sleep(200 * time.Millisecond)
				if _, perr := c.Ping(ctx); perr == nil {
					return c, nil
				}
				if ok, _ := daemonLocked(h); !ok {
					return nil, fmt.Errorf("the mb daemon exited at start (code %d): %s (see %s)", code, lastLogLine(filepath.Join(h, daemon.LogName)), filepath.Join(h, daemon.LogName))
				}
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the mb daemon did not answer on %s within %s: see %s", c.Socket(), daemonStartTimeout, filepath.Join(h, daemon.LogName))
		}
	}
}

// spawnDaemon starts `mb daemon --foreground` detached: in its own session,
// with stdin, stdout and stderr on /dev/null (so `$(mb start x)` never
// hangs on it), logging to $MB_HOME/daemon.log. The returned channel gets
// its exit code if it exits while this process waits.
func spawnDaemon(h string) (<-chan int, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the mb executable to start the daemon: %w", err)
	}
	// Check the log here, where the user sees the error: a link planted in
	// its place is refused, never written through (nor shown back).
	logPath := filepath.Join(h, daemon.LogName)
	lf, err := logfile.OpenAppend(logPath)
	if err != nil {
		return nil, fmt.Errorf("start the mb daemon: %w", err)
	}
	lf.Close()
	cmd := exec.Command(exe, "daemon", "--foreground", "--log-file", logPath)
	// A clean environment (daemon.KeptEnv): the daemon outlives this
	// command and serves every later one.
	cmd.Env = append(daemon.CleanEnv(os.Environ()), layout.Env+"="+h)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	keepInheritedFromChildren()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the mb daemon (%s daemon): %w", exe, err)
	}
	ch := make(chan int, 1)
	go func() {
		err := cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			ch <- ee.ExitCode()
			return
		}
		ch <- 0
	}()
	return ch, nil
}

package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// leftoverGrace is how long a QEMU left over from an earlier run gets to
// exit after SIGTERM before SIGKILL.
const leftoverGrace = 5 * time.Second

// stopLeftover stops a QEMU that outlived an earlier run of the VM in dir
// (its vmhost was killed where there is no Pdeathsig, as on macOS): the
// process qemu.pid names, when it still runs and is a QEMU whose -pidfile
// is this directory's. Such a QEMU holds the VM's disk and ports, so the
// new start would fail. A PID that now belongs to anything else is left
// alone.
func stopLeftover(ctx context.Context, log *slog.Logger, dir string) error {
	pidPath := filepath.Join(dir, pidFileName)
	f, err := os.OpenFile(pidPath, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", pidPath, err)
	}
	b, err := io.ReadAll(io.LimitReader(f, 64))
	f.Close()
	if err != nil {
		return fmt.Errorf("read %s: %w", pidPath, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		log.Warn("ignoring a malformed QEMU PID file", "path", pidPath, "content", strings.TrimSpace(string(b)))
		return nil
	}
	if pid == os.Getpid() {
		return nil
	}
	cmdline, err := processCmdline(pid)
	if err != nil || !isOurQEMU(cmdline, pidPath) {
		return nil // gone, or another program reusing the PID
	}
	log.Warn("a QEMU from an earlier run of this VM still runs; stopping it first", "pid", pid)
	if err := waitGone(ctx, pid, pidPath, syscall.SIGTERM, leftoverGrace); err == nil {
		return nil
	}
	if err := waitGone(ctx, pid, pidPath, syscall.SIGKILL, leftoverGrace); err != nil {
		return fmt.Errorf("a QEMU from an earlier run of this VM (PID %d) still runs and did not die from SIGKILL: %w; stop it by hand (kill -9 %d)", pid, err, pid)
	}
	return nil
}

// isOurQEMU reports whether a command line is a QEMU writing pidPath.
func isOurQEMU(cmdline []string, pidPath string) bool {
	if len(cmdline) == 0 {
		return false
	}
	prog := cmdline[0]
	if len(cmdline) == 1 {
		prog, _, _ = strings.Cut(prog, " ")
	}
	if !strings.HasPrefix(filepath.Base(prog), "qemu-system") {
		return false
	}
	for i := 1; i+1 < len(cmdline); i++ {
		if cmdline[i] == "-pidfile" && cmdline[i+1] == pidPath {
			return true
		}
	}
	// ps on macOS gives one string: look for the flag and path in it.
	joined := strings.Join(cmdline, " ")
	return strings.Contains(joined, " -pidfile "+pidPath+" ") || strings.HasSuffix(joined, " -pidfile "+pidPath)
}

// waitGone sends sig to pid and waits up to grace for it to be gone, as
// long as pid is still our QEMU (a reused PID is never signalled twice).
func waitGone(ctx context.Context, pid int, pidPath string, sig syscall.Signal, grace time.Duration) error {
	if err := syscall.Kill(pid, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return fmt.Errorf("signal %s: %w", sig, err)
	}
	deadline := time.Now().Add(grace)
	for {
		cmdline, err := processCmdline(pid)
		if err != nil || !isOurQEMU(cmdline, pidPath) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still running %s after %s", grace, sig)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

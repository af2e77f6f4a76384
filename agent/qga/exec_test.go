package qga_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mbvm/mb/agent/qga"
)

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// 16 MiB of stdin reach mb-agent's command intact, streamed in chunks.
func TestExecLargeStdinToMBAgent(t *testing.T) {
	_, path := startAgent(t)
	c := newClient(t, path, long)
	stdin := make([]byte, 16<<20)
	rand.Read(stdin)
	res, err := c.Exec(context.Background(), qga.ExecRequest{Argv: []string{"sha256sum"}, Stdin: stdin})
	if err != nil {
		t.Fatal(err)
	}
	if got, _, _ := strings.Cut(string(res.Stdout), " "); got != sha256Hex(stdin) || res.ExitCode != 0 {
		t.Errorf("sha256 of stdin in the guest %q (exit %d), want %s", res.Stdout, res.ExitCode, sha256Hex(stdin))
	}
	// A command that stops reading early still reports its result.
	res, err = c.Exec(context.Background(), qga.ExecRequest{Argv: []string{"head", "-c", "3"}, Stdin: stdin})
	if err != nil || string(res.Stdout) != string(stdin[:3]) {
		t.Errorf("head -c 3 of 16 MiB = %+v, %v", res, err)
	}
}

// When the caller gives up, mb-agent kills the command's process group.
func TestExecCancelKillsProcessGroup(t *testing.T) {
	_, path := startAgent(t)
	c := newClient(t, path, long)
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(ctx, qga.ExecRequest{Argv: []string{"sh", "-c", "echo $$ > " + pidFile + "; sleep 1000 & sleep 1000"}})
		done <- err
	}()
	var pgid int
	waitFor(t, func() bool {
		b, err := os.ReadFile(pidFile)
		pgid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pgid > 0
	}, "the command to start")
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "was killed") {
		t.Errorf("cancelled exec = %v, want context.Canceled saying the group was killed", err)
	}
	deadline := time.Now().Add(long)
	for !errors.Is(unix.Kill(-pgid, 0), unix.ESRCH) {
		if time.Now().After(deadline) {
			unix.Kill(-pgid, unix.SIGKILL)
			t.Fatalf("process group %d still runs after the exec was cancelled", pgid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stock qemu-ga takes stdin in one request: up to MaxStockStdin works,
// more is refused up front with an error that says why.
func TestExecStdinToStockQemuGA(t *testing.T) {
	c := newClient(t, startQemuGA(t), long)
	ctx := context.Background()
	stdin := make([]byte, qga.MaxStockStdin)
	rand.Read(stdin)
	res, err := c.Exec(ctx, qga.ExecRequest{Argv: []string{"sha256sum"}, Stdin: stdin})
	if err != nil {
		t.Fatal(err)
	}
	if got, _, _ := strings.Cut(string(res.Stdout), " "); got != sha256Hex(stdin) {
		t.Errorf("sha256 of stdin under qemu-ga %q, want %s", res.Stdout, sha256Hex(stdin))
	}
	_, err = c.Exec(ctx, qga.ExecRequest{Argv: []string{"cat"}, Stdin: make([]byte, qga.MaxStockStdin+1)})
	if !errors.Is(err, qga.ErrStdinTooLarge) || !strings.Contains(err.Error(), "mb-agent") {
		t.Errorf("stdin over qemu-ga's limit = %v, want ErrStdinTooLarge pointing to mb-agent", err)
	}
	if _, err := c.Ping(ctx); err != nil {
		t.Errorf("Ping after a refused exec: %v", err)
	}
}

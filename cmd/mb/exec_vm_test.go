package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// A real guest: 16 MiB of stdin reach the command intact, and Ctrl-C on
// mb exec exits 130 and kills the command in the guest.
func TestQEMUExecStdinAndInterrupt(t *testing.T) {
	e := requireVM(t)
	e.ok("start", "demo")

	stdin := make([]byte, 16<<20)
	rand.Read(stdin)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := e.command(ctx, "exec", "demo", "--", "sha256sum")
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("mb exec with 16 MiB of stdin: %v\n%s", err, errb.String())
	}
	sum := sha256.Sum256(stdin)
	if got, _, _ := strings.Cut(out.String(), " "); got != hex.EncodeToString(sum[:]) {
		t.Errorf("sha256 in the guest %q, want %x", out.String(), sum)
	}

	sleeping := func() bool {
		return strings.Contains(e.ok("exec", "demo", "--", "ps"), "sleep 1000")
	}
	cmd = e.command(ctx, "exec", "demo", "--", "sh", "-c", "sleep 1000")
	errb.Reset()
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e.eventually("sleep 1000 to run in the guest", sleeping)
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Errorf("mb exec after SIGINT: %v, want exit 130\n%s", err, errb.String())
	}
	e.eventually("sleep 1000 to be gone from the guest", func() bool { return !sleeping() })
}

package fake

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mbvm/mb/agent"
	"github.com/mbvm/mb/vmhost"
)

// hostAgent serves one mb-agent (its guest side, run on the host) for
// every connection, as the agent in a guest is one across reconnects.
func hostAgent(t *testing.T, dir string) string {
	srv := agent.NewServer(agent.Options{Shutdown: func(context.Context, string) error { return nil }})
	return serveGuest(t, dir, func(ctx context.Context, c net.Conn) { srv.ServeConn(ctx, c) })
}

// 16 MiB of stdin cross vmhost and the agent intact (the request line is
// limited to 1 MiB, so it goes in chunks on both hops).
func TestExecSixteenMiBStdin(t *testing.T) {
	dir := shortDir(t)
	c, _ := startVMHost(t, dir, hostAgent(t, dir))
	stdin := make([]byte, vmhost.MaxExecStdin)
	rand.Read(stdin)
	ctx, cancel := context.WithTimeout(context.Background(), long)
	defer cancel()
	r, err := c.Call(ctx, vmhost.Request{Method: vmhost.MethodExec, Argv: []string{"sha256sum"}, Stdin: stdin})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(stdin)
	if got, _, _ := strings.Cut(string(r.Stdout), " "); got != hex.EncodeToString(sum[:]) || r.ExitCode == nil || *r.ExitCode != 0 {
		t.Errorf("sha256 of 16 MiB of stdin in the guest: %q (exit %v), want %x", r.Stdout, r.ExitCode, sum)
	}
}

// A client that goes away makes vmhost cancel the exec, and the agent
// kill the command's whole process group.
func TestExecClientGoneKillsGuestCommand(t *testing.T) {
	dir := shortDir(t)
	c, _ := startVMHost(t, dir, hostAgent(t, dir))
	pidFile := filepath.Join(dir, "pid")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Call(ctx, vmhost.Request{Method: vmhost.MethodExec, Argv: []string{"sh", "-c", "echo $$ > " + pidFile + "; sleep 1000 & sleep 1000"}})
		done <- err
	}()
	var pgid int
	for deadline := time.Now().Add(long); ; {
		b, err := os.ReadFile(pidFile)
		if pgid, _ = strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pgid > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the command did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	for deadline := time.Now().Add(long); !errors.Is(unix.Kill(-pgid, 0), unix.ESRCH); {
		if time.Now().After(deadline) {
			unix.Kill(-pgid, unix.SIGKILL)
			t.Fatalf("process group %d still runs after its client went away", pgid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

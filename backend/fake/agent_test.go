package fake

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mbvm/mb/agent"
	"github.com/mbvm/mb/agent/qga"
	"github.com/mbvm/mb/vmhost"
)

// long bounds what must merely finish; statusBound is what a vmhost status
// answer may take while the guest misbehaves (a hang fails the test).
const (
	long        = 60 * time.Second
	statusBound = 2 * time.Second
)

// serveGuest serves handle on a unix socket, as QEMU's agent chardev would.
func serveGuest(t *testing.T, dir string, handle func(ctx context.Context, c net.Conn)) string {
	t.Helper()
	path := filepath.Join(dir, "qga.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				stop := context.AfterFunc(ctx, func() { c.Close() })
				defer stop()
				handle(ctx, c)
			}()
		}
	}()
	t.Cleanup(func() { cancel(); ln.Close(); wg.Wait() })
	return path
}

// startVMHost runs a vmhost server for a fake VM whose agent is at
// agentSock, and returns a client for it.
func startVMHost(t *testing.T, dir, agentSock string) (*vmhost.Client, *AgentController) {
	t.Helper()
	ctrl := WithAgent(New(Options{Name: "hostile"}), agentSock, 100*time.Millisecond, nil)
	sock := filepath.Join(dir, "vmhost.sock")
	srv := vmhost.NewServer(sock, filepath.Join(dir, "vmhost.pid"), ctrl, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		ctrl.ForceStop(context.Background())
		cancel()
		<-done
	})
	c := vmhost.NewClient(sock)
	deadline := time.Now().Add(long)
	for !c.IsAlive() {
		if time.Now().After(deadline) {
			t.Fatalf("vmhost did not come up on %s", sock)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return c, ctrl
}

func shortDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "mbf-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func flood(chunk []byte) func(ctx context.Context, c net.Conn) {
	return func(ctx context.Context, c net.Conn) {
		for ctx.Err() == nil {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}
}

func TestHostileGuestNeverDelaysStatus(t *testing.T) {
	guests := map[string]func(ctx context.Context, c net.Conn){
		"garbage":    flood([]byte("}{\"return\"::[[[\x00garbage\n")),
		"huge-lines": flood(append(bytes.Repeat([]byte("x"), 1<<20), '\n')),
		"huge-reply": func(ctx context.Context, c net.Conn) {
			c.Write([]byte("\xff{\"return\":\""))
			flood(bytes.Repeat([]byte("a"), 1<<20))(ctx, c)
		},
		"ff-storm": flood(bytes.Repeat([]byte{0xFF}, 64<<10)),
	}
	for name, guest := range guests {
		t.Run(name, func(t *testing.T) {
			dir := shortDir(t)
			c, _ := startVMHost(t, dir, serveGuest(t, dir, guest))
			deadline := time.Now().Add(long)
			for {
				ctx, cancel := context.WithTimeout(context.Background(), statusBound)
				r, err := c.Call(ctx, vmhost.Request{Method: vmhost.MethodStatus})
				cancel()
				if err != nil {
					t.Fatalf("status while the guest sends %s: %v", name, err)
				}
				if r.Agent == nil {
					t.Fatal("status has no agent object")
				}
				if r.Agent.State == qga.StateUnresponsive {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("agent state %q after %v of %s, want unresponsive", r.Agent.State, long, name)
				}
				time.Sleep(50 * time.Millisecond)
			}
			// exec fails with an error rather than hanging.
			ctx, cancel := context.WithTimeout(context.Background(), long)
			defer cancel()
			r, err := c.Call(ctx, vmhost.Request{Method: vmhost.MethodExec, Argv: []string{"true"}, TimeoutSeconds: 1})
			if err == nil {
				t.Errorf("exec against a hostile guest = %+v; want an error", r)
			}
		})
	}
}

func TestExecThroughVMHostWithHostAgent(t *testing.T) {
	dir := shortDir(t)
	sock := serveGuest(t, dir, func(ctx context.Context, c net.Conn) {
		agent.ServeConn(ctx, c, agent.Options{Shutdown: func(context.Context, string) error { return nil }})
	})
	c, _ := startVMHost(t, dir, sock)
	ctx, cancel := context.WithTimeout(context.Background(), long)
	defer cancel()
	r, err := c.Call(ctx, vmhost.Request{Method: vmhost.MethodExec, Argv: []string{"sh", "-c", "printf out; exit 7"}})
	if err != nil || !r.OK || r.ExitCode == nil || *r.ExitCode != 7 || string(r.Stdout) != "out" {
		t.Fatalf("exec = %+v, %v; want exit 7 and stdout out", r, err)
	}
	r, err = c.Call(ctx, vmhost.Request{Method: vmhost.MethodMetrics})
	if err != nil || !r.OK || !bytes.Contains(r.Metrics, []byte(`"source":"mb-agent"`)) {
		t.Errorf("metrics = %+v, %v", r, err)
	}
	deadline := time.Now().Add(long)
	for {
		r, err := c.Status()
		if err != nil {
			t.Fatal(err)
		}
		if r.Agent != nil && r.Agent.State == qga.StateOK && r.Agent.Kind == "mb-agent" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent never ok: %+v", r.Agent)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package qga_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mbvm/mb/agent"
	"github.com/mbvm/mb/agent/qga"
	"github.com/mbvm/mb/agent/qgaproto"
)

// long is a generous bound for anything that must merely finish: a loaded
// machine must not fail a correct test.
const long = 60 * time.Second

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// serveSocket listens on a unix socket in a temp dir and runs handle for
// each connection, the way QEMU's chardev hands the guest's port to vmhost.
func serveSocket(t testing.TB, handle func(ctx context.Context, c net.Conn)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qga.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(ctx, c)
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return path
}

// realAgent serves mb-agent's guest side on each connection; shutdowns are
// recorded, not run.
type realAgent struct {
	shutdowns   chan string
	shutdownErr atomic.Value // error
}

func startAgent(t testing.TB) (*realAgent, string) {
	a := &realAgent{shutdowns: make(chan string, 8)}
	// One agent for every connection, as in a guest.
	srv := agent.NewServer(agent.Options{Logger: quietLogger(), Shutdown: func(_ context.Context, mode string) error {
		if err, _ := a.shutdownErr.Load().(error); err != nil {
			return err
		}
		a.shutdowns <- mode
		return nil
	}})
	path := serveSocket(t, func(ctx context.Context, c net.Conn) {
		srv.ServeConn(ctx, c)
	})
	return a, path
}

func newClient(t testing.TB, path string, timeout time.Duration) *qga.Client {
	c := qga.NewClient(path, qga.ClientOptions{CallTimeout: timeout, Logger: quietLogger()})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestClientAgainstMBAgent(t *testing.T) {
	a, path := startAgent(t)
	c := newClient(t, path, long)
	ctx := context.Background()

	if _, err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	info, err := c.Info(ctx)
	if err != nil || !info.IsMBAgent() || info.Version != agent.Version {
		t.Fatalf("qgaproto.Info = %+v, %v", info, err)
	}
	host, err := c.HostName(ctx)
	if want, _ := os.Hostname(); err != nil || host != want {
		t.Errorf("qgaproto.HostName = %q, %v; want %q", host, err, want)
	}
	osi, err := c.OSInfo(ctx)
	if err != nil || osi.KernelRelease == "" {
		t.Errorf("qgaproto.OSInfo = %+v, %v", osi, err)
	}
	ifaces, err := c.Interfaces(ctx)
	if err != nil || len(ifaces) == 0 {
		t.Errorf("Interfaces = %+v, %v", ifaces, err)
	}
	var m qgaproto.Metrics
	raw, err := c.Metrics(ctx)
	if err != nil || json.Unmarshal(raw, &m) != nil || m.Source != "mb-agent" || m.CPU == nil || m.Memory == nil {
		t.Errorf("qgaproto.Metrics = %s, %v", raw, err)
	}
	if err := c.Call(ctx, "no-such-command", nil, nil); !isClass(err, qgaproto.ClassCommandNotFound) {
		t.Errorf("unknown command: %v, want CommandNotFound", err)
	}
	// An error reply does not break the channel.
	if _, err := c.Ping(ctx); err != nil {
		t.Errorf("Ping after an error reply: %v", err)
	}

	if err := c.Shutdown(ctx, "halt"); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if m := <-a.shutdowns; m != "halt" {
		t.Errorf("shutdown mode = %q", m)
	}
	a.shutdownErr.Store(errors.New("init refuses"))
	if err := c.Shutdown(ctx, ""); err == nil || !strings.Contains(err.Error(), "init refuses") {
		t.Errorf("refused Shutdown = %v, want the agent's error", err)
	}
	if _, err := c.Ping(ctx); err != nil {
		t.Errorf("Ping after a refused shutdown: %v", err)
	}
}

func isClass(err error, class string) bool {
	var qe *qgaproto.Error
	return errors.As(err, &qe) && qe.Class == class
}

func TestExec(t *testing.T) {
	_, path := startAgent(t)
	c := newClient(t, path, long)
	ctx := context.Background()

	res, err := c.Exec(ctx, qga.ExecRequest{Argv: []string{"cat", "/proc/version"}})
	if err != nil || !strings.HasPrefix(string(res.Stdout), "Linux version") || res.ExitCode != 0 {
		t.Fatalf("cat /proc/version = %+v, %v", res, err)
	}
	res, err = c.Exec(ctx, qga.ExecRequest{Argv: []string{"sh", "-c", "exit 7"}})
	if err != nil || res.ExitCode != 7 {
		t.Errorf("exit 7 = %+v, %v", res, err)
	}
	res, err = c.Exec(ctx, qga.ExecRequest{Argv: []string{"sh", "-c", "cat; echo e >&2"}, Stdin: []byte("in\x00put")})
	if err != nil || string(res.Stdout) != "in\x00put" || string(res.Stderr) != "e\n" {
		t.Errorf("stdin/stderr = %+v, %v", res, err)
	}
	res, err = c.Exec(ctx, qga.ExecRequest{Argv: []string{"sh", "-c", "head -c 20971520 /dev/zero"}})
	if err != nil || !res.OutTruncated || len(res.Stdout) != agent.MaxExecOutput {
		t.Errorf("20 MiB: truncated=%v len=%d err=%v", res != nil && res.OutTruncated, len(res.Stdout), err)
	}
	res, err = c.Exec(ctx, qga.ExecRequest{Argv: []string{"sh", "-c", "sleep 1000"}, Timeout: 300 * time.Millisecond})
	if !errors.Is(err, qga.ErrExecTimeout) || res == nil || res.ExitCode != 137 {
		t.Errorf("timeout: %+v, %v; want exit 137 and ErrExecTimeout", res, err)
	}
	if _, err := c.Exec(ctx, qga.ExecRequest{Argv: []string{"/no/such/program"}}); !errors.Is(err, qga.ErrExecNotFound) || !errors.Is(err, qga.ErrExecStart) {
		t.Errorf("missing program: %v, want qga.ErrExecStart wrapping qga.ErrExecNotFound", err)
	}
	if _, err := c.Exec(ctx, qga.ExecRequest{}); err == nil {
		t.Error("empty argv: want an error")
	}
}

func TestClientReconnectsAfterTheAgentGoesAway(t *testing.T) {
	var n atomic.Int32
	path := serveSocket(t, func(ctx context.Context, c net.Conn) {
		if n.Add(1) == 1 {
			// The first connection dies after answering the sync.
			agent.ServeConn(ctx, &closeAfter{Conn: c, n: 1}, agent.Options{Logger: quietLogger()})
			return
		}
		agent.ServeConn(ctx, c, agent.Options{Logger: quietLogger()})
	})
	c := newClient(t, path, long)
	ctx := context.Background()
	if _, err := c.Ping(ctx); err == nil {
		t.Fatal("Ping on a connection that dies: want an error")
	}
	if _, err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping after reconnecting: %v", err)
	}
	if n.Load() != 2 {
		t.Errorf("connections = %d, want 2", n.Load())
	}
}

// closeAfter closes the connection after n writes.
type closeAfter struct {
	net.Conn
	n int
}

func (c *closeAfter) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n--
	if c.n <= 0 {
		c.Conn.Close()
	}
	return n, err
}

func TestCallsWaitingForTheChannelHonourTheirContext(t *testing.T) {
	_, path := startAgent(t)
	c := newClient(t, path, long)
	// A long exec holds the channel only between polls; a ping still gets
	// through while it runs.
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(context.Background(), qga.ExecRequest{Argv: []string{"sleep", "1"}})
		done <- err
	}()
	if _, err := c.Ping(context.Background()); err != nil {
		t.Errorf("Ping during an exec: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("exec: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Ping(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Ping with a cancelled context = %v", err)
	}
}

package vmhost_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mbvm/mb/backend/fake"
	"github.com/mbvm/mb/vmhost"
)

// serveLimited is serve with lowered connection limits.
func serveLimited(t *testing.T, c vmhost.VMController, maxConns int, idle, read time.Duration) string {
	t.Helper()
	sock := filepath.Join(shortTempDir(t), "vmhost.sock")
	srv := vmhost.NewServer(sock, "", c, nil)
	vmhost.SetConnLimits(srv, maxConns, idle, read)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(10 * time.Second); !vmhost.NewClient(sock).IsAlive(); {
		if time.Now().After(deadline) {
			t.Fatal("server did not come up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return sock
}

// statusWithin asks for status with a deadline and fails the test when no
// answer comes.
func statusWithin(t *testing.T, sock string, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if r, err := vmhost.NewClient(sock).Call(ctx, vmhost.Request{Method: vmhost.MethodStatus}); err != nil || r.State != "running" {
		t.Fatalf("status = %+v, %v; want running", r, err)
	}
}

// Thousands of idle connections (over the cap) do not keep status from
// being answered: the longest-idle ones are closed to make room.
func TestIdleConnectionsDoNotBlockStatus(t *testing.T) {
	sock := serveLimited(t, fake.New(fake.Options{}), 32, time.Hour, time.Hour)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 2000; i++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	statusWithin(t, sock, 10*time.Second)
}

// slowMetrics is a controller whose metrics calls block until released.
type slowMetrics struct {
	*fake.Controller
	entered chan struct{}
	release chan struct{}
}

func (m slowMetrics) Metrics(ctx context.Context) (json.RawMessage, error) {
	m.entered <- struct{}{}
	select {
	case <-m.release:
	case <-ctx.Done():
	}
	return json.RawMessage(`{}`), nil
}

// When every connection is running a request, a new one is refused with
// code busy (and closed); once the requests are done, it is served again.
func TestBusyRefusal(t *testing.T) {
	vm := slowMetrics{fake.New(fake.Options{}), make(chan struct{}, 4), make(chan struct{})}
	sock := serveLimited(t, vm, 4, time.Hour, time.Hour)
	for i := 0; i < 4; i++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, `{"method":"metrics"}`+"\n")
	}
	for i := 0; i < 4; i++ {
		select {
		case <-vm.entered:
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d of 4 requests reached the backend: a slot was refused although the connection holding it had hung up", i)
		}
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	line, _ := r.ReadString('\n')
	if !strings.Contains(line, `"ok":false`) || !strings.Contains(line, `"code":"busy"`) {
		t.Errorf("a connection over the cap with every slot running a request got %q; want ok:false, code busy", line)
	}
	if _, err := r.ReadString('\n'); err == nil {
		t.Error("the refused connection stayed open")
	}
	close(vm.release)
	statusWithin(t, sock, 10*time.Second)
}

// A connection that sends nothing is closed after the idle timeout; one
// that trickles a request is answered with a timeout and closed.
func TestIdleAndReadTimeouts(t *testing.T) {
	sock := serveLimited(t, fake.New(fake.Options{}), 32, 300*time.Millisecond, 300*time.Millisecond)
	idle, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	_ = idle.SetDeadline(time.Now().Add(10 * time.Second))
	if n, err := idle.Read(make([]byte, 1)); err == nil {
		t.Errorf("idle connection read %d bytes, want it closed", n)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Error("idle connection was never closed by the server")
	}

	slow, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	_ = slow.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(slow, `{"method":`)
	line, _ := bufio.NewReader(slow).ReadString('\n')
	if !strings.Contains(line, `"code":"timeout"`) {
		t.Errorf("a trickled request got %q, want a timeout reply", line)
	}
}

// A real vmhost limited to 64 descriptors, flooded with 1,000 idle
// connections, still answers status, and logs its failing accepts a few
// times, not in a tight loop.
func TestDescriptorExhaustion(t *testing.T) {
	bin := buildVMHost(t)
	dir := filepath.Join(shortTempDir(t), "vm1")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "vmhost.out")
	out, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command("sh", "-c", `ulimit -n 64 && exec "$0" "$@"`, bin, "--dir", dir, "--home", filepath.Dir(dir), "--backend", "fake")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	sock := filepath.Join(dir, vmhost.SocketName)
	for deadline := time.Now().Add(30 * time.Second); !vmhost.NewClient(sock).IsAlive(); {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("vmhost did not come up: %s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 1000; i++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			continue // a full backlog refuses; the flood goes on
		}
		conns = append(conns, c)
	}
	for i := 0; i < 5; i++ {
		statusWithin(t, sock, 10*time.Second)
	}
	b, _ := os.ReadFile(logPath)
	if n := strings.Count(string(b), "accept"); n > 3 {
		t.Errorf("vmhost logged %d lines about accept in a few seconds, want a few at most:\n%s", n, b)
	}
}

// A burst of clients far over the cap, each on fresh connections, gets
// either its answer or a clear "busy" refusal: never a connection reset.
// Making room closes only connections that have sent nothing; one whose
// request is already waiting in the socket is not idle (closing it with
// unread data made the kernel reset it).
func TestBurstOverTheCapIsAnsweredOrRefused(t *testing.T) {
	sock := serveLimited(t, fake.New(fake.Options{}), 4, time.Hour, time.Hour)
	const clients, calls = 64, 20
	errs := make(chan error, clients)
	busy := make(chan struct{}, clients*calls)
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			cl := vmhost.NewClient(sock)
			for j := 0; j < calls; j++ {
				_, err := cl.Status()
				var re *vmhost.RemoteError
				switch {
				case err == nil:
				case errors.As(err, &re) && re.Code == vmhost.CodeBusy:
					busy <- struct{}{}
				default:
					errs <- fmt.Errorf("client %d call %d: %w", i, j, err)
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d of %d calls refused as busy", len(busy), clients*calls)
}

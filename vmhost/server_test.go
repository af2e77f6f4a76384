package vmhost_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mbvm/mb/backend/fake"
	"github.com/mbvm/mb/vmhost"
)

// harness runs a Server over a real unix socket in a temporary directory.
type harness struct {
	sock, pid string
	cancel    context.CancelFunc
	done      chan struct{} // closed when Run returns
	err       error         // Run's result, valid after done
}

func shortTempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "vmh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func serve(t *testing.T, c vmhost.VMController) *harness {
	t.Helper()
	dir := shortTempDir(t)
	h := &harness{sock: filepath.Join(dir, "vmhost.sock"), pid: filepath.Join(dir, "vmhost.pid"), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	srv := vmhost.NewServer(h.sock, h.pid, c, nil)
	go func() { h.err = srv.Run(ctx); close(h.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(h.pid); err == nil {
			if conn, err := net.Dial("unix", h.sock); err == nil {
				conn.Close()
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("server did not come up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(20 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return h
}

func TestClientEveryMethod(t *testing.T) {
	vm := fake.New(fake.Options{Name: "vm1", SSHPort: 2222})
	h := serve(t, vm)
	cl := vmhost.NewClient(h.sock)

	st, err := cl.Status()
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if !st.OK || st.State != "running" || st.Backend != "fake" || st.SSHPort != 2222 {
		t.Errorf("status = %+v, want ok running fake 2222", st)
	}
	info, err := cl.Info()
	if err != nil {
		t.Fatalf("info: %v", err)
	}
	if info.Name != "vm1" || info.PID != os.Getpid() || info.StartedAt == nil || info.Backend != "fake" {
		t.Errorf("info = %+v, want name vm1, our pid, a start time", info)
	}
	if !cl.IsAlive() {
		t.Error("IsAlive = false on a serving socket")
	}
	stop, err := cl.Stop(5)
	if err != nil {
		t.Fatalf("stop: %v", err)
	}
	if stop.State != "stopped" || stop.StoppedBy != "graceful" {
		t.Errorf("stop = %+v, want stopped by graceful", stop)
	}
	if err := vm.Wait(); err != nil {
		t.Errorf("Wait after stop = %v, want nil", err)
	}
	select {
	case <-h.done:
		if h.err != nil {
			t.Errorf("Run = %v", h.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after the VM stopped")
	}
	for _, p := range []string{h.sock, h.pid} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists after Run returned (err=%v)", p, err)
		}
	}
	if cl.IsAlive() {
		t.Error("IsAlive = true after Run returned")
	}
	if _, err := cl.Status(); err == nil || !strings.Contains(err.Error(), h.sock) {
		t.Errorf("status on a gone socket: err = %v, want one naming the socket", err)
	}
}

func TestForceStop(t *testing.T) {
	vm := fake.New(fake.Options{StopDelay: time.Hour})
	h := serve(t, vm)
	r, err := vmhost.NewClient(h.sock).ForceStop()
	if err != nil {
		t.Fatalf("force_stop: %v", err)
	}
	if r.State != "stopped" || r.StoppedBy != "kill" {
		t.Errorf("force_stop = %+v, want stopped by kill", r)
	}
}

func TestStopModesAndDefaults(t *testing.T) {
	vm := fake.New(fake.Options{StopDelay: 50 * time.Millisecond})
	h := serve(t, vm)
	cl := vmhost.NewClient(h.sock)
	ctx := context.Background()
	_, err := cl.Call(ctx, vmhost.Request{Method: vmhost.MethodStop, Mode: "acpi"})
	var re *vmhost.RemoteError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "acpi") || !strings.Contains(err.Error(), "graceful") {
		t.Fatalf("stop mode acpi on fake: err = %v, want a remote error naming the mode and the accepted ones", err)
	}
	if st, _ := cl.Status(); st == nil || st.State != "running" {
		t.Fatalf("a refused stop changed the state: %+v", st)
	}
	// No timeout_seconds: the 30 s default applies, so a 50 ms graceful
	// stop succeeds (a zero timeout would have killed it).
	r, err := cl.Call(ctx, vmhost.Request{Method: vmhost.MethodStop, Mode: "graceful"})
	if err != nil || r.StoppedBy != "graceful" {
		t.Fatalf("stop graceful = %+v, %v; want stopped_by graceful", r, err)
	}
}

func TestStopTimeoutKills(t *testing.T) {
	vm := fake.New(fake.Options{StopDelay: time.Hour})
	h := serve(t, vm)
	r, err := vmhost.NewClient(h.sock).Stop(1)
	if err != nil || r.StoppedBy != "kill" {
		t.Fatalf("stop with 1 s timeout on a 1 h stop = %+v, %v; want stopped_by kill", r, err)
	}
}

// rawConn sends raw lines and reads raw reply lines.
type rawConn struct {
	net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, sock string) *rawConn {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return &rawConn{Conn: c, r: bufio.NewReaderSize(c, 1<<20)}
}

func (c *rawConn) roundTrip(t *testing.T, line string) vmhost.Response {
	t.Helper()
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		t.Fatalf("write: %v", err)
	}
	reply, err := c.r.ReadString('\n')
	if err != nil {
		t.Fatalf("read reply to %q: %v", line, err)
	}
	var r vmhost.Response
	if err := json.Unmarshal([]byte(reply), &r); err != nil {
		t.Fatalf("reply %q is not JSON: %v", reply, err)
	}
	return r
}

func TestBadRequestsThenGood(t *testing.T) {
	h := serve(t, fake.New(fake.Options{}))
	c := dialRaw(t, h.sock)
	cases := []struct{ line, want string }{
		{`{"method":`, "malformed"},
		{`not json at all`, "malformed"},
		{`[1,2,3]`, "malformed"},
		{`{"method":"status"} {"method":"status"}`, "trailing"},
		{`{"timeout_seconds":5}`, "missing \"method\""},
		{`{"method":"reboot-the-world"}`, `unknown method "reboot-the-world"`},
		{`{"method":"status","bogus":1}`, "bogus"},
		{`{"method":"stop","timeout_seconds":-3}`, "timeout_seconds"},
		{`{"method":"exec","argv":["true"]}`, "exec is not available"},
	}
	for _, tc := range cases {
		r := c.roundTrip(t, tc.line)
		if r.OK || !strings.Contains(r.Error, tc.want) {
			t.Errorf("%s -> %+v, want ok:false with %q", tc.line, r, tc.want)
		}
	}
	// Same connection still answers a good request, in order.
	if r := c.roundTrip(t, `{"method":"status"}`); !r.OK || r.State != "running" {
		t.Errorf("status after bad requests = %+v", r)
	}
}

func TestOversizedLineClosesOnlyThatConnection(t *testing.T) {
	h := serve(t, fake.New(fake.Options{}))
	other := dialRaw(t, h.sock)
	big := dialRaw(t, h.sock)
	payload := `{"method":"status","mode":"` + strings.Repeat("x", vmhost.MaxRequestSize) + `"}` + "\n"
	go big.Write([]byte(payload)) // the server may close before we finish writing
	reply, err := big.r.ReadString('\n')
	if err != nil {
		t.Fatalf("no reply to an oversized line: %v", err)
	}
	if !strings.Contains(reply, "over") || !strings.Contains(reply, `"ok":false`) {
		t.Errorf("oversized reply = %q", reply)
	}
	if _, err := big.r.ReadString('\n'); err == nil {
		t.Error("connection stayed open after an oversized line")
	}
	if r := other.roundTrip(t, `{"method":"status"}`); !r.OK {
		t.Errorf("other connection disturbed: %+v", r)
	}
	if r := dialRaw(t, h.sock).roundTrip(t, `{"method":"status"}`); !r.OK {
		t.Errorf("new connection after oversized line: %+v", r)
	}
}

func TestManyRequestsOnOneConnectionInOrder(t *testing.T) {
	h := serve(t, fake.New(fake.Options{}))
	c := dialRaw(t, h.sock)
	var b strings.Builder
	for i := 0; i < 50; i++ {
		if i%2 == 0 {
			b.WriteString(`{"method":"status"}` + "\n")
		} else {
			b.WriteString(`{"method":"info"}` + "\n")
		}
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		line, err := c.r.ReadString('\n')
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		hasPID := strings.Contains(line, `"pid"`)
		if (i%2 == 1) != hasPID {
			t.Fatalf("reply %d out of order: %s", i, line)
		}
	}
}

func TestHundredConcurrentClients(t *testing.T) {
	h := serve(t, fake.New(fake.Options{Name: "busy"}))
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			cl := vmhost.NewClient(h.sock)
			for j := 0; j < 10; j++ {
				var r *vmhost.Response
				var err error
				if j%2 == 0 {
					r, err = cl.Status()
				} else {
					r, err = cl.Info()
				}
				if err != nil {
					errs <- fmt.Errorf("client %d call %d: %w", i, j, err)
					return
				}
				if r.State != "running" {
					errs <- fmt.Errorf("client %d: state %q", i, r.State)
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
}

func TestStatusAnswersDuringSlowStop(t *testing.T) {
	vm := fake.New(fake.Options{StopDelay: 3 * time.Second})
	h := serve(t, vm)
	cl := vmhost.NewClient(h.sock)
	stopDone := make(chan *vmhost.Response, 1)
	go func() {
		r, _ := cl.Stop(30)
		stopDone <- r
	}()
	deadline := time.Now().Add(20 * time.Second)
	for vm.State() != "stopping" {
		if time.Now().After(deadline) {
			t.Fatal("VM never reached stopping")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i := 0; i < 5; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		r, err := cl.Call(ctx, vmhost.Request{Method: vmhost.MethodStatus})
		cancel()
		if err != nil {
			t.Fatalf("status during stop: %v", err)
		}
		if r.State != "stopping" {
			t.Errorf("status during stop: state %q, want stopping", r.State)
		}
		select {
		case <-stopDone:
			t.Fatal("stop returned before the VM went down")
		default:
		}
	}
	select {
	case r := <-stopDone:
		if r == nil || r.StoppedBy != "graceful" {
			t.Errorf("stop = %+v", r)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("stop never returned")
	}
}

// bigInfo is a controller whose info is larger than 64 KiB.
type bigInfo struct{ *fake.Controller }

func (b bigInfo) Describe() vmhost.Description {
	return vmhost.Description{Name: "big", Details: map[string]any{"blob": strings.Repeat("0123456789abcdef", 16<<10)}}
}

func TestReplyOver64KiB(t *testing.T) {
	h := serve(t, bigInfo{fake.New(fake.Options{})})
	r, err := vmhost.NewClient(h.sock).Info()
	if err != nil {
		t.Fatalf("info: %v", err)
	}
	blob, _ := r.Details["blob"].(string)
	if len(blob) != 256<<10 {
		t.Errorf("blob arrived with %d bytes, want %d", len(blob), 256<<10)
	}
}

func TestRunRemovesFilesOnCancel(t *testing.T) {
	dir := shortTempDir(t)
	sock, pid := filepath.Join(dir, "s.sock"), filepath.Join(dir, "s.pid")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- vmhost.NewServer(sock, pid, fake.New(fake.Options{}), nil).Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if fi, err := os.Stat(sock); err == nil {
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("socket never appeared")
		}
		time.Sleep(5 * time.Millisecond)
	}
	b, err := os.ReadFile(pid)
	if err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(os.Getpid()) {
		t.Errorf("PID file = %q, %v; want our PID", b, err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
	}
	for _, p := range []string{sock, pid} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind", p)
		}
	}
}

func TestRunFailsOnBadSocketPathAndCleansUp(t *testing.T) {
	dir := shortTempDir(t)
	pid := filepath.Join(dir, "p.pid")
	err := vmhost.NewServer(filepath.Join(dir, "missing", "s.sock"), pid, fake.New(fake.Options{}), nil).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("Run with a socket in a missing dir = %v, want an error naming the path", err)
	}
	if _, err := os.Stat(pid); !errors.Is(err, os.ErrNotExist) {
		t.Error("PID file left behind after a failed Run")
	}
}

// scriptedExec is a controller whose exec returns a fixed result and error.
type scriptedExec struct {
	*fake.Controller
	res *vmhost.ExecResult
	err error
}

func (s scriptedExec) Exec(context.Context, vmhost.ExecRequest) (*vmhost.ExecResult, error) {
	return s.res, s.err
}

// exec maps what the Executor returns onto the reply: a command the guest
// cannot start is a result with 127 (not found) or 126, a timeout a result
// with the output so far and timed_out, anything else an error.
func TestExecOutcomes(t *testing.T) {
	cases := []struct {
		name     string
		res      *vmhost.ExecResult
		err      error
		ok       bool
		code     int
		timedOut bool
		stdout   string
		errText  string
	}{
		{"exit code", &vmhost.ExecResult{ExitCode: 3, Stdout: []byte("out")}, nil, true, 3, false, "out", ""},
		{"not found", nil, fmt.Errorf("%w: %q: fork/exec /x: no such file or directory", vmhost.ErrExecNotFound, "/x"), true, 127, false, "", "no such file"},
		{"not executable", nil, fmt.Errorf("%w: %q: permission denied", vmhost.ErrExecNotExecutable, "/etc"), true, 126, false, "", "permission denied"},
		// The reason is a wrapped error, never the message's words.
		{"no reason", nil, fmt.Errorf("%w: %q: no such file or directory", vmhost.ErrExecStart, "/x"), true, 126, false, "", "no such file"},
		{"killed at timeout", &vmhost.ExecResult{ExitCode: 137, Stdout: []byte("partial")}, fmt.Errorf("%w after 1s", vmhost.ErrExecTimeout), true, 137, true, "partial", "timed out"},
		{"abandoned at timeout", nil, fmt.Errorf("%w after 1s: may still run", vmhost.ErrExecTimeout), true, 124, true, "", "may still run"},
		{"agent failure", nil, errors.New("agent unresponsive"), false, 0, false, "", "agent unresponsive"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := serve(t, scriptedExec{fake.New(fake.Options{}), c.res, c.err})
			r, err := vmhost.NewClient(h.sock).Call(context.Background(), vmhost.Request{Method: vmhost.MethodExec, Argv: []string{"x"}})
			if !c.ok {
				if err == nil || !strings.Contains(err.Error(), c.errText) {
					t.Fatalf("reply %+v, %v; want an error containing %q", r, err, c.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.ExitCode == nil || *r.ExitCode != c.code || r.TimedOut != c.timedOut || string(r.Stdout) != c.stdout || !strings.Contains(r.ExecError, c.errText) {
				t.Errorf("reply exit %v timed_out %v stdout %q exec_error %q; want %d %v %q %q", r.ExitCode, r.TimedOut, r.Stdout, r.ExecError, c.code, c.timedOut, c.stdout, c.errText)
			}
		})
	}
}

package vmhost_test

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mbvm/mb/backend/fake"
	"github.com/mbvm/mb/vmhost"
)

// asyncServer imitates a vmhost that answers stop and force_stop at once
// with state "stopping" and brings the VM down in the background, reading
// one JSON value per connection with no newline needed (as masterblaster's
// vmhost does).
type asyncServer struct {
	sock string
	ln   net.Listener
	// takes is how long the VM takes to go down after a stop.
	takes time.Duration
	// exitWhenDown closes the socket once the VM is down, as a vmhost
	// that exits with its VM.
	exitWhenDown bool

	mu    sync.Mutex
	state string
	stops int
}

func newAsyncServer(t *testing.T, takes time.Duration, exitWhenDown bool) *asyncServer {
	t.Helper()
	s := &asyncServer{sock: filepath.Join(shortTempDir(t), "vmhost.sock"), takes: takes, exitWhenDown: exitWhenDown, state: "running"}
	ln, err := net.Listen("unix", s.sock)
	if err != nil {
		t.Fatal(err)
	}
	s.ln = ln
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.handle(c)
		}
	}()
	return s
}

func (s *asyncServer) handle(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var req struct {
		Method string `json:"method"`
	}
	if err := json.NewDecoder(c).Decode(&req); err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch req.Method {
	case "stop", "force_stop":
		if s.state == "running" {
			s.stops++
			s.state = "stopping"
			time.AfterFunc(s.takes, func() {
				s.mu.Lock()
				s.state = "stopped"
				s.mu.Unlock()
				if s.exitWhenDown {
					s.ln.Close()
				}
			})
		}
		_ = json.NewEncoder(c).Encode(map[string]any{"ok": true, "state": "stopping"})
	default:
		_ = json.NewEncoder(c).Encode(map[string]any{"ok": true, "state": s.state})
	}
}

func (s *asyncServer) current() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Client.Stop returns only once the VM is down, also against a server that
// answers at once with "stopping".
func TestClientStopWaitsForAnAsyncServer(t *testing.T) {
	for _, exit := range []bool{false, true} {
		name := "server stays"
		if exit {
			name = "server exits with the VM"
		}
		t.Run(name, func(t *testing.T) {
			s := newAsyncServer(t, 500*time.Millisecond, exit)
			cl := vmhost.NewClient(s.sock)
			r, err := cl.Stop(10)
			if err != nil {
				t.Fatalf("stop: %v", err)
			}
			if r.State != vmhost.StateStopped || s.current() != "stopped" {
				t.Errorf("Stop returned state %q while the server's VM is %q; want both stopped", r.State, s.current())
			}
		})
	}
	t.Run("force_stop", func(t *testing.T) {
		s := newAsyncServer(t, 300*time.Millisecond, false)
		r, err := vmhost.NewClient(s.sock).ForceStop()
		if err != nil || r.State != vmhost.StateStopped || s.current() != "stopped" {
			t.Errorf("ForceStop = %+v, %v with the server's VM %q; want stopped", r, err, s.current())
		}
	})
}

// A VM that never goes down makes Stop fail when its deadline ends, saying
// the VM is still stopping.
func TestClientStopGivesUpOnAnAsyncServer(t *testing.T) {
	s := newAsyncServer(t, time.Hour, false)
	_, err := vmhost.NewClient(s.sock).Stop(1)
	if err == nil || !strings.Contains(err.Error(), "still stopping") {
		t.Fatalf("stop of a VM that never goes down: %v, want an error saying it is still stopping", err)
	}
}

// A request without a trailing newline is answered when the client then
// half-closes its side, as masterblaster's client may do.
func TestRequestWithoutNewlineThenHalfClose(t *testing.T) {
	h := serve(t, fake.New(fake.Options{}))
	c, err := net.Dial("unix", h.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(`{"method":"status"}`)); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.UnixConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	var r vmhost.Response
	if err := json.NewDecoder(c).Decode(&r); err != nil || !r.OK || r.State != "running" {
		t.Fatalf("reply to a request without newline: %+v, %v", r, err)
	}
}

var (
	vmhostBinOnce sync.Once
	vmhostBin     string
	vmhostBinErr  error
)

// buildVMHost builds cmd/vmhost once for the tests that need a real
// vmhost process.
func buildVMHost(t *testing.T) string {
	t.Helper()
	vmhostBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vmhbin")
		if err != nil {
			vmhostBinErr = err
			return
		}
		vmhostBin = filepath.Join(dir, "vmhost")
		out, err := exec.Command("go", "build", "-o", vmhostBin, "github.com/mbvm/mb/cmd/vmhost").CombinedOutput()
		if err != nil {
			vmhostBinErr = errors.New("go build cmd/vmhost: " + err.Error() + ": " + string(out))
		}
	})
	if vmhostBinErr != nil {
		t.Fatal(vmhostBinErr)
	}
	return vmhostBin
}

// startVMHost runs a real vmhost process with the fake backend in a new
// directory and waits until it answers.
func startVMHost(t *testing.T, env ...string) (*exec.Cmd, string) {
	t.Helper()
	bin := buildVMHost(t)
	dir := filepath.Join(shortTempDir(t), "vm1")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--dir", dir, "--home", filepath.Dir(dir), "--backend", "fake")
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	sock := filepath.Join(dir, vmhost.SocketName)
	cl := vmhost.NewClient(sock)
	deadline := time.Now().Add(30 * time.Second)
	for !cl.IsAlive() {
		if time.Now().After(deadline) {
			t.Fatal("vmhost did not come up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cmd, sock
}

// Against a vmhost stopped with SIGSTOP, every call fails with a clear
// error once its deadline ends, instead of hanging.
func TestCallsToAStoppedVMHostEnd(t *testing.T) {
	cmd, sock := startVMHost(t)
	freeze(t, cmd.Process.Pid)
	cl := vmhost.NewClient(sock)
	done := make(chan error, 3)
	go func() { _, err := cl.Status(); done <- err }()
	go func() { _, err := cl.Info(); done <- err }()
	go func() { _, err := cl.Stop(1); done <- err }()
	for i := 0; i < 3; i++ {
		select {
		case err := <-done:
			if !errors.Is(err, vmhost.ErrNoAnswer) || !strings.Contains(err.Error(), "hung or stopped") {
				t.Errorf("call to a stopped vmhost: %v, want ErrNoAnswer saying it is hung or stopped", err)
			}
		case <-time.After(2 * time.Minute):
			t.Fatal("a call to a stopped vmhost never returned")
		}
	}
	if cl.IsAlive() {
		t.Error("IsAlive = true for a stopped vmhost")
	}
}

// freeze stops pid with SIGSTOP and waits until the kernel shows it
// stopped (signal delivery is asynchronous).
func freeze(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return // no procfs (macOS): trust the signal
		}
		if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'T' {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("PID %d not stopped 10 s after SIGSTOP: %s", pid, b)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

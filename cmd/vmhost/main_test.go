package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mbvm/mb/vmhost"
)

var vmhostBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vmhbin")
	if err != nil {
		panic(err)
	}
	vmhostBin = filepath.Join(dir, "vmhost")
	if out, err := exec.Command("go", "build", "-o", vmhostBin, ".").CombinedOutput(); err != nil {
		panic("build vmhost: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type proc struct {
	cmd  *exec.Cmd
	dir  string
	done chan struct{}
	err  error
	log  *strings.Builder
}

func startVMHost(t *testing.T, dir string, env ...string) *proc {
	t.Helper()
	p := &proc{dir: dir, done: make(chan struct{}), log: &strings.Builder{}}
	p.cmd = exec.Command(vmhostBin, "--dir", dir, "--backend", "fake")
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

func (p *proc) waitReady(t *testing.T) *vmhost.Client {
	t.Helper()
	cl := vmhost.NewClient(filepath.Join(p.dir, "vmhost.sock"))
	deadline := time.Now().Add(60 * time.Second)
	for !cl.IsAlive() {
		select {
		case <-p.done:
			t.Fatalf("vmhost exited early: %v\n%s", p.err, p.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("vmhost never answered\n%s", p.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cl
}

func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("vmhost did not exit\n%s", p.log)
	}
	return p.cmd.ProcessState.ExitCode()
}

func tempDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "vmh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return filepath.Join(d, "vm1")
}

func readExit(t *testing.T, dir string) vmhost.ExitRecord {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "exit.json"))
	if err != nil {
		t.Fatalf("exit.json: %v", err)
	}
	var rec vmhost.ExitRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatalf("exit.json: %v", err)
	}
	return rec
}

func assertGone(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(dir, n)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind (err=%v)", n, err)
		}
	}
}

func TestStopLeavesNoSocketAndRecordsExit(t *testing.T) {
	dir := tempDir(t)
	p := startVMHost(t, dir)
	cl := p.waitReady(t)
	r, err := cl.Stop(10)
	if err != nil || r.StoppedBy != "graceful" {
		t.Fatalf("stop = %+v, %v", r, err)
	}
	if code := p.wait(t); code != 0 {
		t.Errorf("exit code %d after a clean stop, want 0\n%s", code, p.log)
	}
	assertGone(t, dir, "vmhost.sock", "vmhost.pid")
	rec := readExit(t, dir)
	if rec.ExitCode != 0 || rec.StoppedBy != "graceful" || rec.Crashed || rec.PID != p.cmd.Process.Pid {
		t.Errorf("exit record = %+v", rec)
	}
}

func TestSecondVMHostOnSameDirRefused(t *testing.T) {
	dir := tempDir(t)
	first := startVMHost(t, dir)
	first.waitReady(t)
	second := startVMHost(t, dir)
	if code := second.wait(t); code != 2 {
		t.Errorf("second vmhost exit code %d, want 2", code)
	}
	if want := strconv.Itoa(first.cmd.Process.Pid); !strings.Contains(second.log.String(), want) {
		t.Errorf("second vmhost's error does not name the holder PID %s:\n%s", want, second.log)
	}
	// The first one is undisturbed.
	if !vmhost.NewClient(filepath.Join(dir, "vmhost.sock")).IsAlive() {
		t.Error("first vmhost stopped answering")
	}
}

func TestKill9ThenNewVMHostStarts(t *testing.T) {
	dir := tempDir(t)
	first := startVMHost(t, dir)
	first.waitReady(t)
	_ = first.cmd.Process.Signal(syscall.SIGKILL)
	first.wait(t)
	// Stale socket and PID file remain, and no exit record: vmhost was killed.
	for _, n := range []string{"vmhost.sock", "vmhost.pid"} {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Fatalf("expected stale %s after kill -9: %v", n, err)
		}
	}
	assertGone(t, dir, "exit.json")
	second := startVMHost(t, dir)
	cl := second.waitReady(t)
	info, err := cl.Info()
	if err != nil || info.PID != second.cmd.Process.Pid {
		t.Fatalf("info after restart = %+v, %v; want the new PID %d", info, err, second.cmd.Process.Pid)
	}
}

func TestStalePIDFileNamingLiveProcess(t *testing.T) {
	dir := tempDir(t)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// PID 1 is alive and unrelated; a leftover socket path is a plain file.
	os.WriteFile(filepath.Join(dir, "vmhost.pid"), []byte("1\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "vmhost.sock"), nil, 0o600)
	p := startVMHost(t, dir)
	p.waitReady(t)
}

func TestSignalsStopGracefullyAndCrash(t *testing.T) {
	t.Run("SIGTERM", func(t *testing.T) {
		dir := tempDir(t)
		p := startVMHost(t, dir)
		p.waitReady(t)
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.wait(t); code != 0 {
			t.Errorf("exit code %d after SIGTERM, want 0\n%s", code, p.log)
		}
		if rec := readExit(t, dir); rec.StoppedBy != "graceful" {
			t.Errorf("exit record after SIGTERM = %+v", rec)
		}
	})
	t.Run("second signal forces", func(t *testing.T) {
		dir := tempDir(t)
		p := startVMHost(t, dir, "MB_FAKE_STOP_DELAY=1h")
		cl := p.waitReady(t)
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		deadline := time.Now().Add(30 * time.Second)
		for {
			st, err := cl.Status()
			if err == nil && st.State == "stopping" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("never saw stopping: %+v %v", st, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		_ = p.cmd.Process.Signal(syscall.SIGINT)
		if code := p.wait(t); code != 0 {
			t.Errorf("exit code %d, want 0\n%s", code, p.log)
		}
		if rec := readExit(t, dir); rec.StoppedBy != "kill" {
			t.Errorf("exit record = %+v, want stopped_by kill", rec)
		}
	})
	t.Run("crash", func(t *testing.T) {
		dir := tempDir(t)
		p := startVMHost(t, dir)
		p.waitReady(t)
		_ = p.cmd.Process.Signal(syscall.SIGUSR1)
		if code := p.wait(t); code != 1 {
			t.Errorf("exit code %d after a crash, want 1\n%s", code, p.log)
		}
		rec := readExit(t, dir)
		if !rec.Crashed || rec.ExitCode != 1 || !strings.Contains(rec.Reason, "crashed") {
			t.Errorf("exit record after crash = %+v", rec)
		}
		assertGone(t, dir, "vmhost.sock", "vmhost.pid")
	})
}

func TestBadSpecExits2WithRecord(t *testing.T) {
	dir := tempDir(t)
	os.MkdirAll(dir, 0o700)
	os.WriteFile(filepath.Join(dir, "spec.yaml"), []byte("name: vm1\nmemory: lots\n"), 0o600)
	p := startVMHost(t, dir)
	if code := p.wait(t); code != 2 {
		t.Errorf("exit code %d for a bad spec, want 2", code)
	}
	if !strings.Contains(p.log.String(), "line 2") {
		t.Errorf("error does not give the line:\n%s", p.log)
	}
	if rec := readExit(t, dir); rec.ExitCode != 2 || !rec.Crashed {
		t.Errorf("exit record = %+v", rec)
	}
}

// hostileAgent serves a unix socket that answers every connection with the
// given behaviour instead of the guest agent protocol.
func hostileAgent(t *testing.T, path, mode string) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				go io.Copy(io.Discard, c)
				junk := map[string][]byte{
					"garbage": []byte(`{"return": {"nope"]]] }}}{{{ not json at all ` + "\n"),
					"ff":      bytes.Repeat([]byte{0xff}, 4096),
					"huge":    bytes.Repeat([]byte(`{"return":"`), 1<<16),
				}[mode]
				for junk != nil {
					if _, err := c.Write(junk); err != nil {
						return
					}
					time.Sleep(time.Millisecond)
				}
				time.Sleep(time.Hour) // "silent": accept, read, never answer
			}(c)
		}
	}()
}

func TestHostileGuestAgentNeverBlocksControlSocket(t *testing.T) {
	for _, mode := range []string{"garbage", "ff", "huge", "silent"} {
		t.Run(mode, func(t *testing.T) {
			dir := tempDir(t)
			os.MkdirAll(dir, 0o700)
			os.WriteFile(filepath.Join(dir, "spec.yaml"), []byte("name: vm1\nbackend: fake\nagent_interval: 200ms\n"), 0o600)
			sock := filepath.Join(filepath.Dir(dir), "hostile-agent.sock")
			hostileAgent(t, sock, mode)
			p := startVMHost(t, dir, "MB_FAKE_AGENT_SOCKET="+sock)
			cl := p.waitReady(t)
			execDone := make(chan error, 1)
			go func() {
				_, err := cl.Call(context.Background(), vmhost.Request{Method: vmhost.MethodExec, Argv: []string{"true"}, TimeoutSeconds: 3})
				execDone <- err
			}()
			var last *vmhost.Response
			for i := 0; i < 20; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				r, err := cl.Call(ctx, vmhost.Request{Method: vmhost.MethodStatus})
				cancel()
				if err != nil {
					t.Fatalf("status %d with a %s agent: %v", i, mode, err)
				}
				last = r
				time.Sleep(150 * time.Millisecond)
			}
			if last.Agent == nil || last.Agent.State == "ok" {
				t.Errorf("agent state with a %s agent = %+v, want unresponsive or none", mode, last.Agent)
			}
			select {
			case err := <-execDone:
				if err == nil {
					t.Errorf("exec through a %s agent succeeded", mode)
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("exec through a %s agent never returned", mode)
			}
			if r, err := cl.Stop(10); err != nil || r.State != "stopped" {
				t.Errorf("stop with a %s agent = %+v, %v", mode, r, err)
			}
		})
	}
}

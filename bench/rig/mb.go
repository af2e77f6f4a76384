package rig

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mbvm/mb/bench/procfs"
)

// MB runs the mb command line against one $MB_HOME.
type MB struct {
	Bin  string
	Home string
	// Env is added to the environment of every command (for example
	// MB_FAKE_STOP_DELAY for the fake backend's vmhosts).
	Env []string
}

// Command returns an *exec.Cmd for `mb args...` with MB_HOME set.
func (m *MB) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, m.Bin, args...)
	cmd.Env = append(append(os.Environ(), "MB_HOME="+m.Home), m.Env...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// CommandError is a failed mb command with its output.
type CommandError struct {
	Args     []string
	ExitCode int
	Stderr   string
	Err      error
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("mb %s: exit code %d: %v: %s", strings.Join(e.Args, " "), e.ExitCode, e.Err, strings.TrimSpace(e.Stderr))
}

func (e *CommandError) Unwrap() error { return e.Err }

// Run runs `mb args...` and returns its stdout; a non-zero exit is a
// *CommandError carrying stderr.
func (m *MB) Run(ctx context.Context, args ...string) (string, error) {
	cmd := m.Command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		return stdout.String(), &CommandError{Args: args, ExitCode: code, Stderr: stderr.String(), Err: err}
	}
	return stdout.String(), nil
}

// VM is the part of `mb ls --json` the rig reads.
type VM struct {
	Name      string `json:"name"`
	State     string `json:"state"`
	Reason    string `json:"reason"`
	ExitCode  *int   `json:"exit_code"`
	StoppedBy string `json:"stopped_by"`
	Restarts  int    `json:"restarts"`
	Ready     bool   `json:"ready"`
	PID       int    `json:"pid"`
	Backend   string `json:"backend"`
	Dir       string `json:"dir"`
}

// List runs `mb ls --json`.
func (m *MB) List(ctx context.Context) ([]VM, error) {
	out, err := m.Run(ctx, "ls", "--json")
	if err != nil {
		return nil, err
	}
	var vms []VM
	if err := json.Unmarshal([]byte(out), &vms); err != nil {
		return nil, fmt.Errorf("mb ls --json printed something that is not a JSON array of VMs: %w: %.200q", err, out)
	}
	return vms, nil
}

// Get returns one VM from `mb ls --json`, or an error naming it when it is
// not listed.
func (m *MB) Get(ctx context.Context, name string) (*VM, error) {
	vms, err := m.List(ctx)
	if err != nil {
		return nil, err
	}
	for i := range vms {
		if vms[i].Name == name {
			return &vms[i], nil
		}
	}
	return nil, fmt.Errorf("VM %q not in mb ls --json (%d VMs listed)", name, len(vms))
}

// WaitState polls `mb ls --json` until the VM's state is one of states.
func (m *MB) WaitState(ctx context.Context, name string, states ...string) (*VM, error) {
	var got *VM
	err := Poll(ctx, 100*time.Millisecond, fmt.Sprintf("VM %s to be %s", name, strings.Join(states, " or ")), func() (bool, error) {
		v, err := m.Get(ctx, name)
		if err != nil {
			return false, err
		}
		got = v
		for _, s := range states {
			if v.State == s {
				return true, nil
			}
		}
		return false, fmt.Errorf("state %s (reason %q)", v.State, v.Reason)
	})
	return got, err
}

// WriteSpec writes a spec document to a file in the home's scratch
// directory and returns its path, for `mb start NAME -f FILE`.
func (m *MB) WriteSpec(name, doc string) (string, error) {
	dir := filepath.Join(m.Home, "specs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("make %s: %w", dir, err)
	}
	p := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		return "", fmt.Errorf("write spec %s: %w", p, err)
	}
	return p, nil
}

// Socket is the daemon socket.
func (m *MB) Socket() string { return filepath.Join(m.Home, "mb.sock") }

// VMDir is a VM's directory.
func (m *MB) VMDir(name string) string { return filepath.Join(m.Home, "vms", name) }

// Daemon is an `mb daemon --foreground` process started by the rig. It is
// killed if the process that started it dies (Pdeathsig); the vmhosts it
// spawns live in their own sessions and survive it, as in production.
type Daemon struct {
	Cmd  *exec.Cmd
	done chan struct{}
}

// PID is the daemon's process ID.
func (d *Daemon) PID() int { return d.Cmd.Process.Pid }

// Done is closed when the daemon has exited.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// StartDaemon starts `mb daemon --foreground` with its output appended to
// $MB_HOME/daemon.out and waits until it answers on mb.sock.
func (m *MB) StartDaemon(ctx context.Context) (*Daemon, error) {
	if err := os.MkdirAll(m.Home, 0o700); err != nil {
		return nil, fmt.Errorf("make %s: %w", m.Home, err)
	}
	out, err := os.OpenFile(filepath.Join(m.Home, "daemon.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open daemon output file: %w", err)
	}
	defer out.Close()
	cmd := exec.Command(m.Bin, "daemon", "--foreground")
	cmd.Env = append(append(os.Environ(), "MB_HOME="+m.Home), m.Env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = ChildSysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start mb daemon: %w", err)
	}
	d := &Daemon{Cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(d.done)
	}()
	err = Poll(ctx, 20*time.Millisecond, "the mb daemon to answer on "+m.Socket(), func() (bool, error) {
		select {
		case <-d.done:
			return false, fmt.Errorf("mb daemon exited (see %s/daemon.out)", m.Home)
		default:
		}
		_, err := DaemonGet(ctx, m.Socket(), "/v1/daemon")
		return err == nil, err
	})
	if err != nil {
		d.Kill()
		return nil, err
	}
	return d, nil
}

// Kill sends SIGKILL to the daemon and waits until it is reaped.
func (d *Daemon) Kill() {
	_ = d.Cmd.Process.Kill()
	<-d.done
}

// Stop sends SIGTERM and waits for the daemon to exit (VMs keep running),
// killing it if it outlives ctx.
func (d *Daemon) Stop(ctx context.Context) error {
	_ = d.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return nil
	case <-ctx.Done():
		d.Kill()
		return fmt.Errorf("mb daemon did not exit on SIGTERM: %w", ctx.Err())
	}
}

// DaemonGet makes one GET request on the daemon socket and returns the body
// of a 2xx reply.
func DaemonGet(ctx context.Context, sock, path string) ([]byte, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, "http://mb"+path, nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s on %s: %w", path, sock, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read GET %s reply: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		return body, fmt.Errorf("GET %s on %s: %s: %s", path, sock, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}

// Processes are the mb, vmhost and QEMU processes that belong to one
// $MB_HOME.
type Processes struct {
	Daemons, VMHosts, QEMUs []int
}

// Total is the number of processes.
func (p Processes) Total() int { return len(p.Daemons) + len(p.VMHosts) + len(p.QEMUs) }

func (p Processes) String() string {
	return fmt.Sprintf("%d daemon(s) %v, %d vmhost(s) %v, %d qemu(s) %v",
		len(p.Daemons), p.Daemons, len(p.VMHosts), p.VMHosts, len(p.QEMUs), p.QEMUs)
}

// QEMUBinaries are the program names counted as QEMU.
var qemuNames = []string{"qemu-system-x86_64", "qemu-system-aarch64"}

// FindProcesses lists the live mb daemons (MB_HOME=mbHome in their
// environment), vmhosts and QEMUs (an argument under mbHome) of mbHome.
func FindProcesses(mbHome string) (Processes, error) {
	var p Processes
	var err error
	if p.VMHosts, err = procfs.FindWithArg(mbHome, "vmhost"); err != nil {
		return p, err
	}
	if p.QEMUs, err = procfs.FindWithArg(mbHome, qemuNames...); err != nil {
		return p, err
	}
	mbs, err := procfs.Find("mb")
	if err != nil {
		return p, err
	}
	for _, pid := range mbs {
		argv, err := procfs.Cmdline(pid)
		if err != nil || len(argv) < 2 || argv[1] != "daemon" {
			continue
		}
		if v, ok, _ := procfs.Environ(pid, "MB_HOME"); ok && v == mbHome {
			p.Daemons = append(p.Daemons, pid)
		}
	}
	return p, nil
}

// KillAll sends SIGKILL to every process of mbHome (daemon first, so it
// restarts nothing) and waits up to 10 s for them to go. It is the
// cleanup of last resort after a failed test or benchmark.
func KillAll(mbHome string) error {
	p, err := FindProcesses(mbHome)
	if err != nil {
		return err
	}
	for _, group := range [][]int{p.Daemons, p.VMHosts, p.QEMUs} {
		for _, pid := range group {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, group := range [][]int{p.Daemons, p.VMHosts, p.QEMUs} {
		for _, pid := range group {
			if err := procfs.WaitGone(ctx, pid, 20*time.Millisecond); err != nil {
				return err
			}
		}
	}
	return nil
}

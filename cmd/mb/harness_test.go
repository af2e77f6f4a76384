package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mbvm/mb/daemon/api"
)

// binDir holds the mb and vmhost binaries built once by TestMain.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "mb-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	out, err := exec.Command("go", "build", "-o", dir+"/", "github.com/mbvm/mb/cmd/mb", "github.com/mbvm/mb/cmd/vmhost").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build mb and vmhost: %v\n%s", err, out)
		return 1
	}
	binDir = dir
	return m.Run()
}

// testEnv is one temporary $MB_HOME with its own daemon.
type testEnv struct {
	t    *testing.T
	root string // removed at cleanup (home may be a directory inside it)
	home string
	// extraEnv is added to every mb invocation.
	extraEnv []string
}

// newEnv makes a short $MB_HOME (unix socket paths must stay under 104
// bytes) and cleans up every process started under it.
func newEnv(t *testing.T) *testEnv {
	t.Helper()
	h, err := os.MkdirTemp("/tmp", "mbt")
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{t: t, root: h, home: h}
	t.Cleanup(e.cleanup)
	return e
}

// cleanup stops the daemon and kills every vmhost left under the home.
func (e *testEnv) cleanup() {
	if e.t.Failed() {
		if b, err := os.ReadFile(filepath.Join(e.home, "daemon.log")); err == nil {
			e.t.Logf("daemon.log:\n%s", b)
		}
	}
	if pid := readPIDFile(filepath.Join(e.home, "daemon.pid")); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, pid := range e.vmhostPIDs("") {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(e.vmhostPIDs("")) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	os.RemoveAll(e.root)
}

func readPIDFile(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// result is one mb run.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
}

// command prepares an mb invocation under this home.
func (e *testEnv) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "mb"), args...)
	// No MB_VMHOST: the daemon must find vmhost next to mb.
	cmd.Env = append(os.Environ(), "MB_HOME="+e.home, "MB_VMHOST=")
	cmd.Env = append(cmd.Env, e.extraEnv...)
	return cmd
}

// mb runs mb with a generous deadline and returns what it printed.
func (e *testEnv) mb(args ...string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := e.command(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		e.t.Fatalf("mb %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// ok runs mb and fails the test unless it exits 0.
func (e *testEnv) ok(args ...string) string {
	e.t.Helper()
	r := e.mb(args...)
	if r.code != 0 {
		e.t.Fatalf("mb %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// list returns mb ls --json.
func (e *testEnv) list() []api.VM {
	e.t.Helper()
	var vms []api.VM
	out := e.ok("ls", "--json")
	if err := json.Unmarshal([]byte(out), &vms); err != nil {
		e.t.Fatalf("mb ls --json printed %q: %v", out, err)
	}
	return vms
}

// vm returns one VM from mb info --json.
func (e *testEnv) vm(name string) api.VM {
	e.t.Helper()
	var vm api.VM
	out := e.ok("info", "--json", name)
	if err := json.Unmarshal([]byte(out), &vm); err != nil {
		e.t.Fatalf("mb info --json printed %q: %v", out, err)
	}
	return vm
}

// eventually polls cond for up to a minute (a slow machine must not fail
// a correct test).
func (e *testEnv) eventually(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// vmhostPIDs lists the live vmhost processes serving a VM of this home
// (name "" for any VM), by their command lines in /proc.
func (e *testEnv) vmhostPIDs(name string) []int {
	ents, _ := os.ReadDir("/proc")
	want := filepath.Join(e.home, "vms") + "/" + name
	var pids []int
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) < 3 || filepath.Base(args[0]) != "vmhost" || args[1] != "--dir" {
			continue
		}
		if (name == "" && strings.HasPrefix(args[2], want)) || (name != "" && args[2] == want) {
			if !isZombie(pid) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z'
}

func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil && !isZombie(pid)
}

// daemonPID is the running daemon's PID from daemon.pid.
func (e *testEnv) daemonPID() int {
	return readPIDFile(filepath.Join(e.home, "daemon.pid"))
}

// httpCall calls the daemon's API directly and returns status and body.
func (e *testEnv) httpCall(method, path, body string) (int, string) {
	e.t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", filepath.Join(e.home, "mb.sock"))
	}}, Timeout: 2 * time.Minute}
	req, err := http.NewRequest(method, "http://mb"+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// events returns the daemon's event history.
func (e *testEnv) events() []api.Event {
	e.t.Helper()
	var evs []api.Event
	for _, line := range strings.Split(strings.TrimSpace(e.ok("events", "--json")), "\n") {
		if line == "" {
			continue
		}
		var ev api.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			e.t.Fatalf("bad event line %q: %v", line, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

func findVM(vms []api.VM, name string) *api.VM {
	for i := range vms {
		if vms[i].Name == name {
			return &vms[i]
		}
	}
	return nil
}

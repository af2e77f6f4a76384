package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/internal/layout"
)

// A user's session with the fake backend: the daemon is auto-started, and
// start, ls (table and JSON), info, logs, stop and rm work.
func TestLifecycleFake(t *testing.T) {
	e := newEnv(t)
	if _, err := os.Stat(filepath.Join(e.home, "mb.sock")); err == nil {
		t.Fatal("mb.sock exists before any mb command")
	}
	out := e.ok("start", "demo", "--backend", "fake")
	if !strings.Contains(out, "demo is ready") {
		t.Errorf("mb start printed %q, want it to say the VM is ready", out)
	}
	// The daemon was auto-started, with a private socket and home.
	if pid := e.daemonPID(); pid <= 0 || !alive(pid) {
		t.Fatalf("no daemon running after mb start (daemon.pid says %d)", pid)
	}
	st, err := os.Stat(filepath.Join(e.home, "mb.sock"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("mb.sock: %v, mode %v; want mode 0600", err, st.Mode().Perm())
	}
	if st, err := os.Stat(e.home); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("MB_HOME mode %v, want 0700", st.Mode().Perm())
	}
	if b, err := os.ReadFile(filepath.Join(e.home, "daemon.log")); err != nil || !strings.Contains(string(b), "mb daemon starting") {
		t.Errorf("daemon.log (%v) lacks the start line: %q", err, b)
	}

	table := e.ok("ls")
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 2 {
		t.Fatalf("mb ls printed %d lines, want header and one VM:\n%s", len(lines), table)
	}
	for _, col := range []string{"NAME", "STATE", "BACKEND", "CPUS", "MEMORY", "SSH", "IP", "AGENT", "UPTIME"} {
		if !strings.Contains(lines[0], col) {
			t.Errorf("mb ls header %q lacks %s", lines[0], col)
		}
	}
	if f := strings.Fields(lines[1]); len(f) < 5 || f[0] != "demo" || f[1] != "running" || f[2] != "fake" || f[3] != "1" || f[4] != "512M" {
		t.Errorf("mb ls row = %q, want demo running fake 1 512M ...", lines[1])
	}

	// JSON: snake_case fields including name, state, restarts.
	raw := e.ok("ls", "--json")
	var generic []map[string]any
	if err := json.Unmarshal([]byte(raw), &generic); err != nil || len(generic) != 1 {
		t.Fatalf("mb ls --json = %q (%v), want an array of one VM", raw, err)
	}
	for _, k := range []string{"name", "state", "restarts", "backend", "cpus", "memory"} {
		if _, ok := generic[0][k]; !ok {
			t.Errorf("mb ls --json lacks %q: %v", k, generic[0])
		}
	}
	if generic[0]["name"] != "demo" || generic[0]["state"] != "running" {
		t.Errorf("mb ls --json = %v, want demo running", generic[0])
	}

	vm := e.vm("demo")
	if vm.State != api.StateRunning || vm.PID <= 0 || !vm.Ready || vm.Spec["backend"] != "fake" {
		t.Errorf("mb info --json = %+v, want running, ready, a vmhost PID and the spec", vm)
	}
	if info := e.ok("info", "demo"); !strings.Contains(info, "State:") || !strings.Contains(info, "running") {
		t.Errorf("mb info printed %q", info)
	}
	if logs := e.ok("logs", "--vmhost", "demo"); !strings.Contains(logs, "VM started") {
		t.Errorf("mb logs --vmhost demo = %q, want vmhost's start line", logs)
	}
	if r := e.mb("logs", "demo"); r.code != 0 {
		t.Errorf("mb logs demo (no serial log with the fake backend): %s", r)
	}

	// Starting a running VM is a no-op.
	if out := e.ok("start", "demo", "--backend", "fake"); !strings.Contains(out, "already running") {
		t.Errorf("second mb start printed %q, want already running", out)
	}
	if pids := e.vmhostPIDs("demo"); len(pids) != 1 || pids[0] != vm.PID {
		t.Errorf("vmhosts for demo: %v, want exactly the one of PID %d", pids, vm.PID)
	}
	// Flags that differ from the spec are refused, naming the field.
	r := e.mb("start", "demo", "--backend", "fake", "--cpus", "2")
	if r.code != 1 || !strings.Contains(r.stderr, "cpus") || !strings.Contains(r.stderr, "mb rm demo") {
		t.Errorf("mb start with a different --cpus: %s; want exit 1 naming cpus and how to change it", r)
	}

	// rm refuses a running VM.
	if r := e.mb("rm", "demo"); r.code != 1 || !strings.Contains(r.stderr, "running") {
		t.Errorf("mb rm of a running VM: %s; want exit 1 saying it runs", r)
	}
	e.ok("stop", "demo")
	e.eventually("the vmhost to exit", func() bool { return !alive(vm.PID) })
	if v := findVM(e.list(), "demo"); v == nil || v.State != api.StateStopped {
		t.Errorf("after mb stop: %+v, want stopped", v)
	}
	e.ok("rm", "demo")
	if out := e.ok("ls", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("mb ls -q after rm = %q, want nothing", out)
	}
	if _, err := os.Stat(filepath.Join(e.home, "vms", "demo")); !os.IsNotExist(err) {
		t.Errorf("VM directory still there after rm: %v", err)
	}
}

// Five concurrent `mb start x` give one VM, one vmhost and five successes.
func TestConcurrentStartsOneVM(t *testing.T) {
	e := newEnv(t)
	var wg sync.WaitGroup
	results := make([]result, 5)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = e.mb("start", "x", "--backend", "fake")
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Errorf("start #%d: %s", i, r)
		}
	}
	if pids := e.vmhostPIDs("x"); len(pids) != 1 {
		t.Errorf("vmhost processes for x: %v, want exactly one", pids)
	}
	starting := 0
	for _, ev := range e.events() {
		if ev.VM == "x" && ev.Type == api.EventStarting {
			starting++
		}
	}
	if starting != 1 {
		t.Errorf("%d starting events for x, want 1", starting)
	}
	// Different VMs start side by side.
	var wg2 sync.WaitGroup
	for _, n := range []string{"p1", "p2", "p3"} {
		wg2.Add(1)
		go func() {
			defer wg2.Done()
			if r := e.mb("start", n, "--backend", "fake"); r.code != 0 {
				t.Errorf("start %s: %s", n, r)
			}
		}()
	}
	wg2.Wait()
	if n := len(e.list()); n != 4 {
		t.Errorf("%d VMs listed, want 4", n)
	}
	e.ok("stop", "--all")
	for _, v := range e.list() {
		if v.State != api.StateStopped {
			t.Errorf("after stop --all, %s is %s", v.Name, v.State)
		}
	}
}

// Stale files (a PID file naming a live unrelated process, a leftover
// socket) never block a start.
func TestStaleFilesDoNotBlockStart(t *testing.T) {
	e := newEnv(t)
	e.ok("start", "s", "--backend", "fake")
	e.ok("stop", "s")
	dir := filepath.Join(e.home, "vms", "s")
	// This test process is alive and is not a vmhost.
	if err := os.WriteFile(filepath.Join(dir, "vmhost.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	leaveSocket(t, filepath.Join(dir, "vmhost.sock"))
	leaveSocket(t, filepath.Join(dir, layout.ConsoleSocket))
	e.ok("start", "s", "--backend", "fake")
	if v := e.vm("s"); v.State != api.StateRunning {
		t.Fatalf("after start over stale files: %+v", v)
	}
	// The same at daemon start: kill the daemon and the vmhost, leave stale
	// files, and start again through a new daemon.
	dpid := e.daemonPID()
	_ = syscall.Kill(dpid, syscall.SIGKILL)
	for _, pid := range e.vmhostPIDs("s") {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	e.eventually("the vmhost to die", func() bool { return len(e.vmhostPIDs("s")) == 0 })
	if err := os.WriteFile(filepath.Join(dir, "vmhost.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	leaveSocket(t, filepath.Join(e.home, "mb.sock.x"))
	v := findVM(e.list(), "s")
	if v == nil || v.State != api.StateCrashed {
		t.Errorf("after kill -9 of daemon and vmhost: %+v, want crashed", v)
	}
	e.ok("start", "s", "--backend", "fake")
	if v := e.vm("s"); v.State != api.StateRunning {
		t.Errorf("start after a crash over stale files: %+v", v)
	}
}

// leaveSocket binds a unix socket at path and closes it without removing
// the file, as a crashed process would.
func leaveSocket(t *testing.T, path string) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	_ = os.Remove(path)
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatalf("bind %s: %v", path, err)
	}
}

// Kill (API) and stop --force (CLI) bring a VM down at once.
func TestKillAndForceStop(t *testing.T) {
	e := newEnv(t)
	e.ok("start", "kf", "--backend", "fake")
	status, body := e.httpCall("POST", "/v1/vms/kf/kill", "")
	var vm api.VM
	if err := json.Unmarshal([]byte(body), &vm); err != nil || status != 200 || vm.State != api.StateStopped || vm.StoppedBy != "kill" {
		t.Errorf("POST /v1/vms/kf/kill: %d %s; want stopped by kill", status, body)
	}
	e.ok("start", "kf")
	e.ok("stop", "--force", "kf")
	if v := e.vm("kf"); v.State != api.StateStopped || v.StoppedBy != "kill" {
		t.Errorf("after mb stop --force: %+v, want stopped by kill", v)
	}
	// Stopping a stopped VM succeeds.
	e.ok("stop", "kf")
}

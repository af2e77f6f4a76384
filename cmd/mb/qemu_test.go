package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mbvm/mb/bench/testvm"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/internal/testenv"
	"github.com/mbvm/mb/vm/image"
)

// miniImageDir finds the prebuilt mini image: $MB_TEST_IMAGE_DIR, else
// ~/.mb/images/mini (what `make image` writes).
func miniImageDir() string {
	if d := os.Getenv("MB_TEST_IMAGE_DIR"); d != "" {
		return d
	}
	h, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(h, ".mb", "images", "mini")
}

// requireVM returns an environment with the mini image linked into its
// $MB_HOME, or skips the test (fails it under MB_REQUIRE_VM=1) when the
// image or QEMU is missing.
func requireVM(t *testing.T) *testEnv {
	t.Helper()
	missing := func(why string) { testenv.Need(t, why) }
	dir := miniImageDir()
	if _, err := image.LoadDir(dir); err != nil {
		missing("the mini image is not built: " + err.Error() + " (run `make image`, or set MB_TEST_IMAGE_DIR)")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		if _, err2 := exec.LookPath("qemu-system-aarch64"); err2 != nil {
			missing("QEMU is not installed (apt-get install qemu-system-x86)")
		}
	}
	vmSlot(t) // before newEnv: released after the env's VMs are killed
	e := newEnv(t)
	if err := os.MkdirAll(filepath.Join(e.home, "images"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir, filepath.Join(e.home, "images", "mini")); err != nil {
		t.Fatal(err)
	}
	return e
}

// qemuPID is the QEMU process of a running VM, from vmhost's info.
func qemuPID(t *testing.T, v api.VM) int {
	t.Helper()
	f, ok := v.Details["qemu_pid"].(float64)
	if !ok || f <= 0 {
		t.Fatalf("VM %s: no qemu_pid in the details: %v", v.Name, v.Details)
	}
	return int(f)
}

// kill -9 of the daemon while two qemu VMs run: both keep running, and the
// next mb ls (auto-starting a new daemon) shows them running, re-adopted.
// The new daemon manages them: exec, a vmhost killed with -9 (a crash,
// restarted under on-failure), a guest power-off (restarted under always),
// and a stop.
func TestQEMUDaemonKill9KeepsVMs(t *testing.T) {
	e := requireVM(t)
	e.ok("start", "q1", "--restart", "always")
	e.ok("start", "q2", "--restart", "on-failure")
	before := map[string]api.VM{"q1": e.vm("q1"), "q2": e.vm("q2")}
	qemu := map[string]int{"q1": qemuPID(t, before["q1"]), "q2": qemuPID(t, before["q2"])}
	old := e.daemonPID()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.eventually("the daemon to die", func() bool { return !alive(old) })
	for n, v := range before {
		if !alive(v.PID) || !alive(qemu[n]) {
			t.Fatalf("%s died with the daemon: vmhost %d alive %v, qemu %d alive %v", n, v.PID, alive(v.PID), qemu[n], alive(qemu[n]))
		}
	}
	vms := e.list()
	if pid := e.daemonPID(); pid == old || !alive(pid) {
		t.Fatalf("mb ls did not start a new daemon (daemon.pid %d)", pid)
	}
	for n, b := range before {
		v := findVM(vms, n)
		if v == nil || v.State != api.StateRunning || v.PID != b.PID {
			t.Errorf("%s after re-adoption: %+v, want running with vmhost PID %d", n, v, b.PID)
		}
	}
	// The new daemon still reaches the guests and stops them.
	if out := e.ok("exec", "q1", "--", "cat", "/proc/version"); !strings.Contains(out, "Linux version") {
		t.Errorf("exec through the new daemon printed %q", out)
	}

	// kill -9 of an adopted vmhost: its QEMU goes with it, the VM is
	// crashed and comes back under on-failure.
	if err := syscall.Kill(before["q2"].PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.eventually("the QEMU of q2 to die with its vmhost", func() bool { return !alive(qemu["q2"]) })
	e.eventually("q2 to be restarted", func() bool {
		v := e.vm("q2")
		return v.State == api.StateRunning && v.Restarts == 1 && v.PID != before["q2"].PID
	})
	crashed := false
	for _, ev := range e.events() {
		crashed = crashed || (ev.VM == "q2" && ev.Type == api.EventCrashed && strings.Contains(ev.Reason, "killed"))
	}
	if !crashed {
		t.Errorf("no crash event for q2 saying vmhost was killed: %+v", e.events())
	}
	qemu["q2"] = qemuPID(t, e.vm("q2"))

	// A guest power-off is a clean stop, restarted under always.
	_ = e.mb("exec", "q1", "--", "poweroff") // the guest goes down under the exec
	e.eventually("q1 to come back after its power-off", func() bool {
		v := e.vm("q1")
		return v.State == api.StateRunning && v.Restarts == 1 && v.PID != before["q1"].PID
	})
	poweredOff := false
	for _, ev := range e.events() {
		poweredOff = poweredOff || (ev.VM == "q1" && ev.Type == api.EventStopped && strings.Contains(ev.Reason, "powered off"))
	}
	if !poweredOff {
		t.Errorf("no stopped event for q1 saying the guest powered off: %+v", e.events())
	}
	qemu["q1"] = qemuPID(t, e.vm("q1"))

	e.ok("stop", "q1", "q2")
	for n := range before {
		if v := e.vm(n); v.State != api.StateStopped {
			t.Errorf("%s after stop: %+v", n, v)
		}
		e.eventually("qemu of "+n+" to exit", func() bool { return !alive(qemu[n]) })
	}
}

// A real guest: mb start waits for the agent; exec, ls's IP and AGENT
// columns, logs, the console and a graceful stop through the agent.
func TestQEMUGuestSession(t *testing.T) {
	e := requireVM(t)
	port := freePort(t)
	out := e.ok("start", "demo", "--forward", strconv.Itoa(port)+":80")
	if !strings.Contains(out, "demo is ready") {
		t.Errorf("mb start printed %q", out)
	}
	if v := findVM(e.list(), "demo"); v == nil || v.State != api.StateRunning || v.AgentState() != "ok" {
		t.Errorf("mb ls --json right after start: %+v, want running with the agent ok", v)
	}
	// The agent reports the addresses shortly after it answers.
	e.eventually("mb ls to show the guest's IP", func() bool {
		v := findVM(e.list(), "demo")
		return v != nil && len(v.IPs) > 0 && v.IPs[0] == "10.0.2.15"
	})
	if table := e.ok("ls"); !strings.Contains(table, "10.0.2.15") || !strings.Contains(table, " ok ") {
		t.Errorf("mb ls table lacks the IP or the agent state:\n%s", table)
	}
	if out := e.ok("exec", "demo", "--", "cat", "/proc/version"); !strings.Contains(out, "Linux version") {
		t.Errorf("mb exec cat /proc/version printed %q", out)
	}
	if r := e.mb("exec", "demo", "--", "sh", "-c", "exit 7"); r.code != 7 {
		t.Errorf("mb exec sh -c 'exit 7': %s, want exit 7", r)
	}
	// Like a shell and timeout(1): 127 for a missing program, 124 for a
	// command killed at --timeout (with what it printed before).
	if r := e.mb("exec", "demo", "--", "/no/such/program"); r.code != 127 || !strings.Contains(r.stderr, "could not start") {
		t.Errorf("mb exec of a missing program: %s, want exit 127 and could not start", r)
	}
	if r := e.mb("exec", "--timeout", "1s", "demo", "--", "sh", "-c", "echo partial; sleep 60"); r.code != 124 || r.stdout != "partial\n" || !strings.Contains(r.stderr, "timed out") {
		t.Errorf("mb exec past its --timeout: %s, want exit 124, the output so far, and timed out", r)
	}
	// The mini image boots without cloud-init, so it has no SSH key: mb ssh
	// says so and points to mb exec.
	if r := e.mb("ssh", "demo", "--", "true"); r.code != 1 || !strings.Contains(r.stderr, "has no SSH key") || !strings.Contains(r.stderr, "mb exec demo") {
		t.Errorf("mb ssh on the mini image: %s; want exit 1, has no SSH key, and a pointer to mb exec", r)
	}
	// stdin is passed when it is not a terminal.
	ctxIn, cancelIn := context.WithTimeout(context.Background(), 2*time.Minute)
	catCmd := e.command(ctxIn, "exec", "demo", "--", "cat")
	catCmd.Stdin = strings.NewReader("through stdin\n")
	got, err := catCmd.Output()
	cancelIn()
	if err != nil || string(got) != "through stdin\n" {
		t.Errorf("echo ... | mb exec demo -- cat: %q, %v", got, err)
	}
	// A command that leaves a sleeping child behind still returns.
	if out := e.ok("exec", "demo", "--", "sh", "-c", "sleep 300 & echo started"); strings.TrimSpace(out) != "started" {
		t.Errorf("exec with a background child printed %q", out)
	}
	// 20 MB of output streams through whole (mb-agent's streamed exec has
	// no output cap) ...
	big := e.mb("exec", "demo", "--", "sh", "-c", "head -c 20000000 /dev/zero")
	if big.code != 0 || len(big.stdout) != 20000000 || strings.Contains(big.stderr, "truncated") {
		t.Errorf("20 MB of output, streamed: exit %d, %d bytes, stderr %q; want all 20000000 bytes and no warning", big.code, len(big.stdout), big.stderr)
	}
	// ... while the one-shot form (--timeout) is cut at the agent's cap,
	// and mb says so.
	big = e.mb("exec", "--timeout", "2m", "demo", "--", "sh", "-c", "head -c 20000000 /dev/zero")
	if big.code != 0 || len(big.stdout) != 16<<20 || !strings.Contains(big.stderr, "truncated") {
		t.Errorf("20 MB of output, one-shot: exit %d, %d bytes, stderr %q; want 16 MiB and a truncation warning", big.code, len(big.stdout), big.stderr)
	}
	// A port forward reaches a listener started in the guest.
	e.ok("exec", "demo", "--", "sh", "-c", "mkdir -p /tmp/www && echo hello-forward > /tmp/www/index.html && httpd -p 80 -h /tmp/www")
	e.eventually("the forwarded port to answer", func() bool {
		c := http.Client{Timeout: 10 * time.Second}
		resp, err := c.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), "hello-forward")
	})
	if logs := e.ok("logs", "demo"); !strings.Contains(logs, "mb-agent: ready") {
		t.Errorf("mb logs demo lacks the ready line: %q", logs)
	}
	if top := e.ok("top", "demo", "-n", "1", "--interval", "1s"); !strings.Contains(top, "CPU") || !strings.Contains(top, "Memory") {
		t.Errorf("mb top printed %q", top)
	}

	// mb console shows the guest's console output.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	console := e.command(ctx, "console", "demo")
	stdin, err := console.StdinPipe() // kept open: a pipe, not a terminal
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := console.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := console.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = console.Process.Kill(); _ = console.Wait() }()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	const marker = "console-marker-7781"
	found := false
	deadline := time.After(90 * time.Second)
	for !found {
		// Repeat until the console is attached and shows it.
		e.ok("exec", "demo", "--", "sh", "-c", "echo "+marker+" > /dev/console")
		wait := time.After(2 * time.Second)
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatal("mb console ended before showing the guest's output")
				}
				if strings.Contains(l, marker) {
					found = true
					break read
				}
			case <-wait:
				break read
			case <-deadline:
				t.Fatal("mb console never showed what the guest wrote to /dev/console")
			}
		}
	}
	_, _ = io.WriteString(stdin, "\n")

	// On a terminal, Ctrl-] detaches and leaves the VM running.
	tty := e.scriptCmd(ctx, "console demo")
	ttyIn, err := tty.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var ttyOut syncBuffer
	tty.Stdout, tty.Stderr = &ttyOut, &ttyOut
	if err := tty.Start(); err != nil {
		t.Fatal(err)
	}
	e.eventually("mb console to attach on the terminal", func() bool { return strings.Contains(ttyOut.String(), "press Ctrl-] to detach") })
	_, _ = ttyIn.Write([]byte{0x1d})
	if err := tty.Wait(); err != nil {
		t.Errorf("mb console after Ctrl-]: %v\n%q", err, ttyOut.String())
	}
	if out := ttyOut.String(); !strings.Contains(out, "detached from demo") {
		t.Errorf("mb console did not say it detached: %q", out)
	}
	if v := e.vm("demo"); v.State != api.StateRunning {
		t.Errorf("the VM after detaching: %+v", v)
	}

	e.ok("stop", "demo")
	if v := e.vm("demo"); v.State != api.StateStopped || v.StoppedBy != "agent" {
		t.Errorf("after mb stop: %+v, want stopped by the agent (guest-shutdown)", v)
	}
	if log := e.ok("logs", "--vmhost", "demo"); !strings.Contains(log, "stopped_by=agent") {
		t.Errorf("vmhost log does not say the agent stopped the VM:\n%s", log)
	}
}

// syncBuffer collects a running command's output safely.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// vmSlot takes the machine-wide VM test lock (testvm.Slot).
func vmSlot(t *testing.T) { testvm.Slot(t) }

// For an image without an agent, mb start waits for the manifest's ready
// line on the console; exec then says the VM has no agent.
func TestQEMUReadyLineWithoutAgent(t *testing.T) {
	e := requireVM(t)
	mini, err := image.LoadDir(miniImageDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(e.home, "images", "noagent")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	manifest := "name: noagent\nkernel: " + mini.Path(mini.Kernel) + "\ninitrd: " + mini.Path(mini.Initrd) +
		"\ncmdline: \"" + mini.Cmdline + "\"\nready_line: \"" + mini.ReadyLine + "\"\nagent: none\n"
	if err := os.WriteFile(filepath.Join(dir, "image.yaml"), []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	out := e.ok("start", "na", "--image", "noagent")
	if !strings.Contains(out, "na is ready") {
		t.Errorf("mb start printed %q", out)
	}
	if logs := e.ok("logs", "na"); !strings.Contains(logs, mini.ReadyLine) {
		t.Errorf("mb start said ready before the ready line reached serial.log: %q", logs)
	}
	if v := e.vm("na"); !v.Ready || v.State != api.StateRunning {
		t.Errorf("mb info --json: %+v, want running and ready", v)
	}
	if r := e.mb("exec", "na", "--", "true"); r.code != 1 || !strings.Contains(r.stderr, "no guest agent") {
		t.Errorf("mb exec on an image with agent: none: %s", r)
	}
	e.ok("stop", "--force", "na")
}

// A first start that vmhost cannot carry out (here: the explicit SSH port
// is taken) leaves no half-made VM behind: the error says why, the VM is
// not kept, and the name is free for the corrected command. A VM that
// existed before keeps existing when a start fails.
func TestFailedFirstStartLeavesNoVM(t *testing.T) {
	e := requireVM(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	r := e.mb("start", "p", "--ssh-port", port)
	if r.code != 1 || !strings.Contains(r.stderr, "already in use") || !strings.Contains(r.stderr, "not kept") {
		t.Errorf("mb start with a taken ssh port: %s; want exit 1, already in use, not kept", r)
	}
	if v := findVM(e.list(), "p"); v != nil {
		t.Errorf("the failed VM is still listed: %+v", *v)
	}
	if _, err := os.Stat(filepath.Join(e.home, "vms", "p")); !os.IsNotExist(err) {
		t.Errorf("the failed VM's directory: %v, want it gone", err)
	}
	// A VM that exists (created, stopped, through the API) is not removed
	// by a failing start.
	if status, body := e.httpCall("POST", "/v1/vms", "name: q\nimage: mini\nssh_port: "+port+"\n"); status != http.StatusCreated {
		t.Fatalf("create q: %d %s", status, body)
	}
	if r := e.mb("start", "q"); r.code != 1 || !strings.Contains(r.stderr, "already in use") || strings.Contains(r.stderr, "not kept") {
		t.Errorf("mb start of an existing VM with a taken port: %s", r)
	}
	if v := findVM(e.list(), "q"); v == nil || v.State != api.StateCrashed {
		t.Errorf("the existing VM after a failed start: %+v, want it kept, crashed", v)
	}
}

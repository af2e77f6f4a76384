package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/daemon/api"
)

// Every command has --help with an example.
func TestHelpHasExamples(t *testing.T) {
	e := newEnv(t)
	cmds := [][]string{{"start"}, {"stop"}, {"restart"}, {"rm"}, {"ls"}, {"info"}, {"logs"}, {"events"},
		{"console"}, {"exec"}, {"shell"}, {"cp"}, {"set"}, {"top"}, {"metrics"}, {"daemon"}, {"daemon", "stop"}, {"daemon", "status"},
		{"service"}, {"service", "install"}, {"service", "uninstall"}, {"service", "status"}, {"version"}, {"completion"},
		{"monitor"}, {"monitor", "hosts"}, {"monitor", "alerts"}, {"monitor", "ack"}, {"monitor", "unack"},
		{"monitor", "silence"}, {"monitor", "silence", "ls"}, {"monitor", "silence", "rm"}, {"monitor", "history"},
		{"monitor", "notify"}, {"monitor", "notify", "test"}, {"monitor", "reload"}, {"monitor", "serve"}, {"monitor", "passwd"}}
	for _, c := range cmds {
		out := e.ok(append(c, "--help")...)
		if !strings.Contains(out, "Examples:") || !strings.Contains(out, "mb "+c[0]) {
			t.Errorf("mb %s --help has no example:\n%s", strings.Join(c, " "), out)
		}
	}
	if _, err := os.Stat(filepath.Join(e.home, "mb.sock")); err == nil {
		t.Error("--help started a daemon")
	}
}

// Shell completion completes VM names.
func TestCompletionOfVMNames(t *testing.T) {
	e := newEnv(t)
	e.ok("start", "alpha", "--backend", "fake", "--no-wait")
	e.ok("start", "beta", "--backend", "fake", "--no-wait")
	out := e.ok("__complete", "stop", "")
	if !strings.Contains(out, "alpha") || !strings.Contains(out, "beta") {
		t.Errorf("completion of mb stop: %q, want the VM names", out)
	}
	if script := e.ok("completion", "bash"); !strings.Contains(script, "__start_mb") && !strings.Contains(script, "_mb") {
		t.Errorf("mb completion bash printed no bash completion script: %.200q", script)
	}
}

// mb restart gives a new vmhost; mb version prints the version; mb events
// -f streams new events as they happen.
func TestRestartVersionEvents(t *testing.T) {
	e := newEnv(t)
	e.ok("start", "r", "--backend", "fake")
	first := e.vm("r").PID

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	follow := e.command(ctx, "events", "-f", "--json", "--vm", "r")
	stdout, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = follow.Wait() }()
	seen := make(chan api.Event, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev api.Event
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				seen <- ev
			}
		}
		close(seen)
	}()

	if out := e.ok("restart", "r"); !strings.Contains(out, "restarted r") {
		t.Errorf("mb restart printed %q", out)
	}
	if v := e.vm("r"); v.State != api.StateRunning || v.PID == first {
		t.Errorf("after restart: %+v, want running with a new vmhost (old PID %d)", v, first)
	}
	// The follower sees the stop and the new start.
	want := map[string]bool{api.EventStopped: false, api.EventStarting: false, api.EventRunning: false}
	var lastSeq int64
	timeout := time.After(90 * time.Second)
	for !(want[api.EventStopped] && want[api.EventRunning]) {
		select {
		case ev, ok := <-seen:
			if !ok {
				t.Fatal("mb events -f ended")
			}
			if ev.Seq <= lastSeq {
				t.Errorf("event seq %d after %d", ev.Seq, lastSeq)
			}
			lastSeq = ev.Seq
			if ev.Type == api.EventStopped {
				want[api.EventStopped] = true
			}
			if ev.Type == api.EventRunning && want[api.EventStopped] {
				want[api.EventRunning] = true
			}
		case <-timeout:
			t.Fatalf("mb events -f did not show the restart: %v", want)
		}
	}
	if out := e.ok("version"); !strings.HasPrefix(out, "mb ") || !strings.Contains(out, "daemon") {
		t.Errorf("mb version printed %q", out)
	}
}

// mb service install --no-load writes the unit where systemd looks and
// says how to inspect it; uninstall removes it.
func TestServiceInstallCLI(t *testing.T) {
	e := newEnv(t)
	userHome := t.TempDir()
	e.extraEnv = []string{"HOME=" + userHome, "XDG_CONFIG_HOME="}
	out := e.ok("service", "install", "--no-load")
	unit := filepath.Join(userHome, ".config", "systemd", "user", "mb.service")
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatalf("unit not written: %v (mb printed %q)", err, out)
	}
	for _, want := range []string{"KillMode=process", "Restart=on-failure", filepath.Join(binDir, "mb") + " daemon --foreground", "MB_HOME=" + e.home} {
		if !strings.Contains(string(b), want) {
			t.Errorf("unit lacks %q:\n%s", want, b)
		}
	}
	if !strings.Contains(out, unit) || !strings.Contains(out, "systemctl --user status mb.service") {
		t.Errorf("mb service install did not say what it wrote and how to inspect it: %q", out)
	}
	// Without lingering, user services stop at logout: the step is named.
	if u, err := user.Current(); err == nil && runtime.GOOS == "linux" {
		_, lerr := os.Stat(filepath.Join("/var/lib/systemd/linger", u.Username))
		if hint := strings.Contains(out, "loginctl enable-linger "+u.Username); hint != (lerr != nil) {
			t.Errorf("mb service install, lingering on: %v; printed %q", lerr == nil, out)
		}
	}
	e.ok("service", "uninstall", "--no-load")
	if _, err := os.Stat(unit); !os.IsNotExist(err) {
		t.Errorf("unit still there after uninstall: %v", err)
	}
	if r := e.mb("service", "status"); r.code != 1 || !strings.Contains(r.stdout, "not installed") {
		t.Errorf("mb service status after uninstall: %s, want exit 1", r)
	}
}

// mb logs -f keeps printing what is appended to the log.
func TestLogsFollow(t *testing.T) {
	e := newEnv(t)
	e.ok("start", "lf", "--backend", "fake")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	follow := e.command(ctx, "logs", "-f", "--vmhost", "lf")
	var out syncBuffer
	follow.Stdout = &out
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = follow.Wait() }()
	e.eventually("the follower to print the existing log", func() bool { return strings.Contains(out.String(), "VM started") })
	if strings.Contains(out.String(), "VM stopped") {
		t.Fatal("the log says stopped before the stop")
	}
	e.ok("stop", "lf")
	e.eventually("the follower to print the stop", func() bool { return strings.Contains(out.String(), "VM stopped") })
}

package daemon

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/internal/peercred"
	"github.com/mbvm/mb/vm/image"
	"github.com/mbvm/mb/vm/spec"
	"github.com/mbvm/mb/vmhost"
)

func TestPeerAllowed(t *testing.T) {
	if err := peercred.Check(1000, 1000); err != nil {
		t.Errorf("same uid refused: %v", err)
	}
	if err := peercred.Check(0, 1000); err == nil {
		t.Error("root peer of a user daemon accepted")
	}
	if err := peercred.Check(1001, 1000); err == nil || !strings.Contains(err.Error(), "1001") {
		t.Errorf("other uid: %v, want a refusal naming it", err)
	}
}

func TestDecideRestart(t *testing.T) {
	now := time.Now()
	b := Backoff{Base: time.Second, Max: 8 * time.Second, Limit: 3, Window: time.Minute}
	recent := func(n int) []time.Time {
		var h []time.Time
		for i := 0; i < n; i++ {
			h = append(h, now.Add(-time.Duration(i+1)*time.Second))
		}
		return h
	}
	cases := []struct {
		name        string
		policy      spec.RestartPolicy
		kind        exitKind
		userStopped bool
		history     []time.Time
		restart     bool
		gaveUp      bool
		delay       time.Duration
	}{
		{"crash under no", spec.RestartNo, exitCrash, false, nil, false, false, 0},
		{"crash under on-failure", spec.RestartOnFailure, exitCrash, false, nil, true, false, time.Second},
		{"crash under always", spec.RestartAlways, exitCrash, false, nil, true, false, time.Second},
		{"power-off under on-failure", spec.RestartOnFailure, exitClean, false, nil, false, false, 0},
		{"power-off under always", spec.RestartAlways, exitClean, false, nil, true, false, time.Second},
		{"user stop under always", spec.RestartAlways, exitClean, true, nil, false, false, 0},
		{"user stop then crash under always", spec.RestartAlways, exitCrash, true, nil, false, false, 0},
		{"start failure", spec.RestartAlways, exitStartFailed, false, nil, false, false, 0},
		{"backoff doubles", spec.RestartOnFailure, exitCrash, false, recent(2), true, false, 4 * time.Second},
		{"limit reached", spec.RestartOnFailure, exitCrash, false, recent(3), false, true, 0},
		{"old restarts do not count", spec.RestartOnFailure, exitCrash, false, []time.Time{now.Add(-time.Hour), now.Add(-2 * time.Hour), now.Add(-3 * time.Hour)}, true, false, time.Second},
	}
	for _, c := range cases {
		d := decideRestart(b, c.policy, c.kind, c.userStopped, c.history, now)
		if d.Restart != c.restart || d.GaveUp != c.gaveUp || (c.restart && d.Delay != c.delay) {
			t.Errorf("%s: %+v, want restart %v gaveUp %v delay %v", c.name, d, c.restart, c.gaveUp, c.delay)
		}
	}
	// The delay is capped.
	big := Backoff{Base: time.Second, Max: 8 * time.Second, Limit: 100, Window: time.Hour}
	if d := decideRestart(big, spec.RestartAlways, exitCrash, false, recent(10), now); d.Delay != 8*time.Second {
		t.Errorf("delay after 10 restarts = %v, want the 8s cap", d.Delay)
	}
}

func TestClassify(t *testing.T) {
	rec := func(code int, crashed bool, by, reason string) *vmhost.ExitRecord {
		return &vmhost.ExitRecord{PID: 42, ExitCode: code, Crashed: crashed, StoppedBy: by, Reason: reason}
	}
	cases := []struct {
		name   string
		rec    *vmhost.ExitRecord
		pid    int
		state  string
		kind   exitKind
		reason string
	}{
		{"clean stop", rec(0, false, "acpi", ""), 42, api.StateStopped, exitClean, "acpi"},
		{"guest power-off", rec(0, false, "guest", ""), 42, api.StateStopped, exitClean, "powered off"},
		{"crash", rec(1, true, "", "qemu killed by signal 9"), 42, api.StateCrashed, exitCrash, "signal 9"},
		{"start failure", rec(2, true, "", "image not found"), 42, api.StateCrashed, exitStartFailed, "image not found"},
		{"record of another run", rec(0, false, "acpi", ""), 43, api.StateCrashed, exitCrash, "without an exit record"},
		{"no record", nil, 42, api.StateCrashed, exitCrash, "without an exit record"},
	}
	for _, c := range cases {
		o := classify(c.rec, c.pid, nil)
		if o.state != c.state || o.kind != c.kind || !strings.Contains(o.reason, c.reason) {
			t.Errorf("%s: %+v, want %s/%v with reason containing %q", c.name, o, c.state, c.kind, c.reason)
		}
	}
	// A spawned vmhost killed by a signal, without a record.
	cmd := exec.Command("sh", "-c", "kill -9 $$")
	_ = cmd.Run()
	if o := classify(nil, cmd.Process.Pid, cmd.ProcessState); o.state != api.StateCrashed || !strings.Contains(o.reason, "killed") {
		t.Errorf("killed vmhost: %+v", o)
	}
	cmd = exec.Command("sh", "-c", "exit 2")
	_ = cmd.Run()
	if o := classify(nil, cmd.Process.Pid, cmd.ProcessState); o.kind != exitStartFailed {
		t.Errorf("vmhost exit 2 without a record: %+v, want a start failure", o)
	}
}

func TestCheckVMSocketPaths(t *testing.T) {
	if err := checkVMSocketPaths("/tmp/h", strings.Repeat("a", 63), "qemu"); err != nil {
		t.Errorf("short home, longest name: %v", err)
	}
	home := "/" + strings.Repeat("x", 59) // 60 bytes
	err := checkVMSocketPaths(home, strings.Repeat("a", 20), "qemu")
	// 60 + len("/vms/") + name + 1 + 23 <= 103 leaves 14 characters.
	if err == nil || !strings.Contains(err.Error(), "at most 14 characters") {
		t.Errorf("long home: %v, want the allowed name length (14)", err)
	}
	if err := checkVMSocketPaths(home, strings.Repeat("a", 14), "qemu"); err != nil {
		t.Errorf("a 14-character name under a 60-byte home: %v", err)
	}
	if err := checkVMSocketPaths("/"+strings.Repeat("x", 90), "a", "qemu"); err == nil || !strings.Contains(err.Error(), "shorter MB_HOME") {
		t.Errorf("a home with no room: %v", err)
	}
}

func TestIsReady(t *testing.T) {
	withAgent := &image.Manifest{Agent: "mb-agent", ReadyLine: "mb-agent: ready"}
	lineOnly := &image.Manifest{Agent: "none", ReadyLine: "login:"}
	ok := &vmhost.AgentInfo{State: "ok"}
	unresp := &vmhost.AgentInfo{State: "unresponsive"}
	has := func(string) bool { return true }
	hasNot := func(string) bool { return false }
	distro := &image.Manifest{Disk: "disk.qcow2", Agent: "none"}
	cases := []struct {
		name  string
		state string
		m     *image.Manifest
		agent *vmhost.AgentInfo
		line  func(string) bool
		ssh   bool
		want  bool
	}{
		{"not running", api.StateStarting, withAgent, ok, has, true, false},
		{"agent answers", api.StateRunning, withAgent, ok, hasNot, false, true},
		{"agent image, ready line but agent not yet", api.StateRunning, withAgent, unresp, has, true, false},
		{"agent image, no agent info", api.StateRunning, withAgent, nil, has, true, false},
		{"no agent, ready line seen", api.StateRunning, lineOnly, nil, has, false, true},
		{"no agent, ready line not yet", api.StateRunning, lineOnly, nil, hasNot, true, false},
		{"distro disk, SSH not yet", api.StateRunning, distro, nil, hasNot, false, false},
		{"distro disk, SSH handshake verified", api.StateRunning, distro, nil, hasNot, true, true},
		{"distro disk, agent answers", api.StateRunning, distro, ok, hasNot, false, true},
		{"no manifest", api.StateRunning, nil, nil, hasNot, false, true},
	}
	for _, c := range cases {
		sshOK := func() bool { return c.ssh }
		if got := isReady(c.state, c.m, c.agent, c.line, sshOK); got != c.want {
			t.Errorf("%s: ready = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestFileContains(t *testing.T) {
	p := t.TempDir() + "/serial.log"
	if fileContains(p, "x") {
		t.Error("missing file contains a line")
	}
	if err := os.WriteFile(p, []byte("boot\r\nmb-agent: ready\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !fileContains(p, "mb-agent: ready") || fileContains(p, "login:") {
		t.Error("fileContains is wrong")
	}
}

func TestEventBus(t *testing.T) {
	b := newEventBus(3)
	for i := 0; i < 5; i++ {
		b.publish(api.Event{VM: "a", Type: api.EventStarting})
	}
	past, ch, cancel := b.subscribe()
	defer cancel()
	if len(past) != 3 || past[0].Seq != 3 || past[2].Seq != 5 {
		t.Errorf("history = %+v, want the last 3 events (seq 3..5)", past)
	}
	b.publish(api.Event{VM: "a", Type: api.EventRunning})
	select {
	case e := <-ch:
		if e.Seq != 6 || e.Type != api.EventRunning {
			t.Errorf("subscriber got %+v", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("subscriber got nothing")
	}
}

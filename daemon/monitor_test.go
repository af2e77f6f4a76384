package daemon

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mbvm/mb/bench/rig"
	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/monitor"
	"github.com/mbvm/mb/monitor/threshold"
)

// writeMonitorConfig writes $MB_HOME/monitor.yaml.
func writeMonitorConfig(t *testing.T, home, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(home, MonitorConfigName), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// monitorEngine is the engine of a test daemon, once Run has opened it.
func (td *testDaemon) monitorEngine(t *testing.T) *monitor.Engine {
	t.Helper()
	var eng *monitor.Engine
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := rig.Poll(ctx, 20*time.Millisecond, "the daemon's monitor", func() (bool, error) {
		td.d.mu.Lock()
		defer td.d.mu.Unlock()
		if td.d.mon != nil {
			eng = td.d.mon.eng
		}
		return eng != nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	return eng
}

// waitHost polls the engine until cond holds for the named host (ok false:
// no such host).
func waitHost(t *testing.T, eng *monitor.Engine, name, what string, cond func(h monitor.HostInfo, ok bool) bool) monitor.HostInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var last monitor.HostInfo
	var lastOK bool
	if err := rig.Poll(ctx, 20*time.Millisecond, what, func() (bool, error) {
		last, lastOK = eng.Host(name)
		return cond(last, lastOK), nil
	}); err != nil {
		t.Fatalf("%v; host %s (known %v): reach %s (%s)", err, name, lastOK, last.Reach, last.ReachReason)
	}
	return last
}

// The daemon's monitor follows a VM's life: running is up (source vm,
// interval the metrics interval), a crash is down and the restart brings
// it back up, a user's stop is an expected absence, and a deleted VM is
// forgotten.
func TestMonitorFollowsVMLifecycle(t *testing.T) {
	home, err := os.MkdirTemp("/tmp", "mbd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	writeMonitorConfig(t, home, "metrics_interval: 200ms\ngrace: 30s\n")
	td := startTestDaemon(t, home, nil)
	eng := td.monitorEngine(t)
	ctx := stepCtx(t)
	if _, err := td.c.Create(ctx, []byte("name: mon\nbackend: fake\nrestart: on-failure\n")); err != nil {
		t.Fatal(err)
	}
	v, err := td.c.Start(ctx, "mon", 0)
	if err != nil {
		t.Fatal(err)
	}
	h := waitHost(t, eng, "mon", "the running VM to be up", func(h monitor.HostInfo, ok bool) bool { return ok && h.Reach == monitor.Up })
	if h.Source != SourceVM || h.Interval != 200*time.Millisecond {
		t.Errorf("host of a VM: source %q interval %s, want %q and the metrics interval", h.Source, h.Interval, SourceVM)
	}
	// The monitor's API and exposition answer on mb.sock next to /v1.
	for _, path := range []string{"/api/0/hosts", "/metrics"} {
		if code, e := rawCall(t, home, "GET", path, nil); code != 200 {
			t.Errorf("GET %s on mb.sock: %d %+v", path, code, e)
		}
	}

	// A crash is an outage; the restart policy's restart brings it back.
	if err := syscall.Kill(v.PID, syscall.SIGUSR1); err != nil { // the fake VM crashes
		t.Fatal(err)
	}
	waitHost(t, eng, "mon", "the crashed VM to be down", func(h monitor.HostInfo, ok bool) bool {
		return ok && h.Reach == monitor.Down && strings.Contains(h.ReachReason, "crashed")
	})
	waitVM(t, td.c, "mon", func(w *api.VM) bool { return w.State == api.StateRunning && w.PID != v.PID && w.PID != 0 })
	waitHost(t, eng, "mon", "the restarted VM to be up again", func(h monitor.HostInfo, ok bool) bool { return ok && h.Reach == monitor.Up })

	// The user's stop is expected: stopped, not down.
	if _, err := td.c.Stop(ctx, "mon", 0, false); err != nil {
		t.Fatal(err)
	}
	waitHost(t, eng, "mon", "the stopped VM to be stopped", func(h monitor.HostInfo, ok bool) bool { return ok && h.Reach == monitor.Stopped })
	for _, a := range eng.Alerts(monitor.AlertFilter{Host: "mon"}) {
		t.Errorf("alert active after the user's stop: %+v", a.State)
	}

	if err := td.c.Delete(ctx, "mon", false); err != nil {
		t.Fatal(err)
	}
	waitHost(t, eng, "mon", "the deleted VM to be forgotten", func(_ monitor.HostInfo, ok bool) bool { return !ok })
}

// A poll that began before a lifecycle event is not applied after it: a
// status read just before a crash must not bring the crashed VM back up.
func TestFeederDropsPollOlderThanEvent(t *testing.T) {
	var mu sync.Mutex
	var notes []monitor.Notification
	eng, err := monitor.New(monitor.Options{Settings: monitor.Settings{Interval: time.Hour},
		Notifier: monitor.NotifierFunc(func(_ context.Context, n monitor.Notification) {
			mu.Lock()
			notes = append(notes, n)
			mu.Unlock()
		})})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f := newVMFeeder(New(Config{Home: t.TempDir(), Logger: log}), eng, func() time.Duration { return time.Second }, log)
	ctx := context.Background()
	f.apply(ctx, "vm1", 0, func() error { return eng.Observe(ctx, monitor.Observation{Host: "vm1", Source: SourceVM}) })
	g := f.gen["vm1"] // a poll begins
	f.event(ctx, api.Event{VM: "vm1", Type: api.EventCrashed, Reason: "qemu was killed"})
	f.apply(ctx, "vm1", g, func() error { return eng.Observe(ctx, monitor.Observation{Host: "vm1", Source: SourceVM}) })
	h, _ := eng.Host("vm1")
	if h.Reach != monitor.Down {
		t.Fatalf("reach after a crash and a stale poll: %s (%s), want down", h.Reach, h.ReachReason)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(notes) != 1 || notes[0].Level != "CRITICAL" || !strings.Contains(notes[0].Text, "qemu was killed") {
		t.Errorf("notifications: %+v, want one down notification naming the crash", notes)
	}
}

// SIGHUP reloads monitor.yaml; a broken file is refused and the
// configuration in force stays.
func TestMonitorReloadOnSIGHUP(t *testing.T) {
	home, err := os.MkdirTemp("/tmp", "mbd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	writeMonitorConfig(t, home, "metrics_interval: 7s\n")
	td := startTestDaemon(t, home, nil)
	td.monitorEngine(t)
	f := td.d.mon.feeder
	if got := f.metricsInterval(); got != 7*time.Second {
		t.Fatalf("metrics interval %s, want 7s from monitor.yaml", got)
	}
	wait := func(want time.Duration) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := rig.Poll(ctx, 20*time.Millisecond, "the reload", func() (bool, error) {
			return f.metricsInterval() == want, nil
		}); err != nil {
			t.Fatalf("%v: metrics interval %s, want %s", err, f.metricsInterval(), want)
		}
	}
	writeMonitorConfig(t, home, "metrics_interval: 9\n")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	wait(9 * time.Second)
	writeMonitorConfig(t, home, "metrics_interval: 9\nno_such_key: 1\n")
	if err := td.d.mon.reload(); err == nil || !strings.Contains(err.Error(), "no_such_key") {
		t.Errorf("reload of a broken file: %v, want an error naming the bad key", err)
	}
	if got := f.metricsInterval(); got != 9*time.Second {
		t.Errorf("metrics interval after a refused reload: %s, want 9s kept", got)
	}
}

// The listing's alert summary counts the active alerts and names the worst.
func TestAlertSummary(t *testing.T) {
	f := func(x float64) *float64 { return &x }
	spec := threshold.Spec{"cpu_monitor": {"cpu_percent": {Warning: f(50), Critical: f(90)}},
		"memory_monitor": {"percent": {Warning: f(80), Critical: f(95)}}}
	eng, err := monitor.New(monitor.Options{Settings: monitor.Settings{Interval: time.Hour, Thresholds: spec}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	observe := func(plugin, field string, v float64) {
		t.Helper()
		if err := eng.Observe(ctx, monitor.Observation{Host: "a", Source: SourceVM, Plugin: plugin, Fields: map[string]any{field: v}}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(want api.AlertSummary, col string) {
		t.Helper()
		got := alertSummary(eng, "a")
		if got != want || got.String() != col {
			t.Errorf("summary %+v %q, want %+v %q", got, got.String(), want, col)
		}
	}
	check(api.AlertSummary{}, "-")
	observe("cpu_monitor", "cpu_percent", 60)
	check(api.AlertSummary{Active: 1, Worst: "WARNING"}, "1 WARN")
	observe("memory_monitor", "percent", 99)
	check(api.AlertSummary{Active: 2, Worst: "CRITICAL"}, "2 CRIT")
	observe("memory_monitor", "percent", 10)
	observe("cpu_monitor", "cpu_percent", 10)
	check(api.AlertSummary{}, "-")
}

// A VM whose vmhost stops answering (here: stopped with SIGSTOP) misses
// metrics_interval + grace and becomes overdue, then down; it is up again
// once it answers.
func TestMonitorSilentVMIsOverdue(t *testing.T) {
	home, err := os.MkdirTemp("/tmp", "mbd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	writeMonitorConfig(t, home, "metrics_interval: 1s\ngrace: 1s\n")
	td := startTestDaemon(t, home, nil)
	eng := td.monitorEngine(t)
	ctx := stepCtx(t)
	if _, err := td.c.Create(ctx, []byte("name: quiet\nbackend: fake\n")); err != nil {
		t.Fatal(err)
	}
	v, err := td.c.Start(ctx, "quiet", 0)
	if err != nil {
		t.Fatal(err)
	}
	waitHost(t, eng, "quiet", "the VM to be up", func(h monitor.HostInfo, ok bool) bool { return ok && h.Reach == monitor.Up })
	if err := syscall.Kill(v.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(v.PID, syscall.SIGCONT) })
	seen := map[monitor.Reachability]bool{}
	waitHost(t, eng, "quiet", "the silent VM to be down", func(h monitor.HostInfo, ok bool) bool {
		seen[h.Reach] = true
		return ok && h.Reach == monitor.Down
	})
	if !seen[monitor.Overdue] {
		t.Errorf("the silent VM went down without being overdue first: %v", seen)
	}
	if err := syscall.Kill(v.PID, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitHost(t, eng, "quiet", "the VM to be up again", func(h monitor.HostInfo, ok bool) bool { return ok && h.Reach == monitor.Up })
}

// Without monitor.yaml the monitor runs with the defaults; a reload of the
// service (what `mb monitor reload` asks for) reads the file once written.
func TestMonitorWithoutConfigThenReload(t *testing.T) {
	td := startTestDaemon(t, "", nil)
	td.monitorEngine(t)
	svc := td.d.mon.svc
	if got := svc.Config().MetricsInterval; got != 30*time.Second {
		t.Errorf("metrics interval without monitor.yaml: %s, want the default 30s", got)
	}
	writeMonitorConfig(t, td.home, "metrics_interval: 4s\n")
	if err := svc.Reload(""); err != nil {
		t.Fatalf("reload once monitor.yaml exists: %v", err)
	}
	if got := td.d.mon.feeder.metricsInterval(); got != 4*time.Second {
		t.Errorf("metrics interval after the reload: %s, want 4s", got)
	}
}

// A daemon starting finds the monitor's hosts as the last daemon left them
// and brings them in line: a VM deleted meanwhile is forgotten, and one
// that crashed meanwhile (restart: no) is down.
func TestMonitorSyncAtStart(t *testing.T) {
	home, err := os.MkdirTemp("/tmp", "mbd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	writeMonitorConfig(t, home, "metrics_interval: 200ms\ngrace: 30s\n")
	td := startTestDaemon(t, home, nil)
	eng := td.monitorEngine(t)
	ctx := stepCtx(t)
	pids := map[string]int{}
	for _, name := range []string{"gone", "dead"} {
		if _, err := td.c.Create(ctx, []byte("name: "+name+"\nbackend: fake\n")); err != nil {
			t.Fatal(err)
		}
		v, err := td.c.Start(ctx, name, 0)
		if err != nil {
			t.Fatal(err)
		}
		pids[name] = v.PID
		waitHost(t, eng, name, name+" to be up", func(h monitor.HostInfo, ok bool) bool { return ok && h.Reach == monitor.Up })
	}
	td.exit() // the VMs keep running
	for name, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitGone(t, pid)
		if name == "gone" {
			if err := os.RemoveAll(filepath.Join(home, "vms", name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	td2 := startTestDaemon(t, home, nil)
	eng2 := td2.monitorEngine(t)
	waitHost(t, eng2, "gone", "the deleted VM to be forgotten", func(_ monitor.HostInfo, ok bool) bool { return !ok })
	waitHost(t, eng2, "dead", "the VM that crashed meanwhile to be down", func(h monitor.HostInfo, ok bool) bool {
		return ok && h.Reach == monitor.Down && strings.Contains(h.ReachReason, "crashed")
	})
}

// A VM that ends cleanly without the user (its vmhost told to stop) and is
// restarted by restart: always is an expected absence: stopped, then up,
// never down, and nobody is notified.
func TestMonitorPolicyRestartIsNotDown(t *testing.T) {
	home, err := os.MkdirTemp("/tmp", "mbd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	writeMonitorConfig(t, home, "metrics_interval: 200ms\ngrace: 30s\n")
	td := startTestDaemon(t, home, nil)
	eng := td.monitorEngine(t)
	ctx := stepCtx(t)
	if _, err := td.c.Create(ctx, []byte("name: pr\nbackend: fake\nrestart: always\n")); err != nil {
		t.Fatal(err)
	}
	v, err := td.c.Start(ctx, "pr", 0)
	if err != nil {
		t.Fatal(err)
	}
	waitHost(t, eng, "pr", "the VM to be up", func(h monitor.HostInfo, ok bool) bool { return ok && h.Reach == monitor.Up })
	if err := syscall.Kill(v.PID, syscall.SIGTERM); err != nil { // a clean stop, not the user's
		t.Fatal(err)
	}
	seen := map[monitor.Reachability]bool{}
	waitHost(t, eng, "pr", "the stop to show", func(h monitor.HostInfo, ok bool) bool {
		seen[h.Reach] = true
		return h.Reach == monitor.Stopped
	})
	waitVM(t, td.c, "pr", func(w *api.VM) bool { return w.State == api.StateRunning && w.Restarts == 1 })
	waitHost(t, eng, "pr", "the restarted VM to be up", func(h monitor.HostInfo, ok bool) bool {
		seen[h.Reach] = true
		return h.Reach == monitor.Up
	})
	if seen[monitor.Down] || seen[monitor.Overdue] {
		t.Errorf("a restart under the policy showed as an outage: %v", seen)
	}
	for _, a := range eng.Alerts(monitor.AlertFilter{Host: "pr", All: true}) {
		if !a.NotifiedAt.IsZero() {
			t.Errorf("notified about a restart under the policy: %+v", a.State)
		}
	}
}

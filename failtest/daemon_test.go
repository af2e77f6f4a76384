package failtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mbvm/mb/bench/procfs"
	"github.com/mbvm/mb/bench/rig"
	"github.com/mbvm/mb/internal/testenv"
	"github.com/mbvm/mb/vmhost"
)

// enduranceCycles is the number of start/stop cycles on a fake VM.
const enduranceCycles = 50

// TestEnduranceFake runs start/stop cycles of a fake VM through the daemon:
// afterwards the daemon has as many descriptors open as before, and no
// process or socket is left.
func TestEnduranceFake(t *testing.T) {
	h := newHome(t)
	mb, d := mbFor(t, h)
	spec := fakeSpec(t, mb, "e1", "no")
	// One warm-up cycle: the daemon's first request on a VM may open
	// long-lived descriptors (logs, watchers) that are not leaks.
	run(t, mb, "start", "e1", "-f", spec)
	run(t, mb, "stop", "e1")
	waitProcesses(t, h, 0, 0, time.Minute)
	base := takeBaseline(t, h, d.PID())

	for i := range enduranceCycles {
		if _, err := mb.Run(ctxFor(t, cmdTimeout), "start", "e1", "-f", spec); err != nil {
			t.Fatalf("cycle %d: %v", i+1, err)
		}
		if err := answersStatus(mb.VMDir("e1"), vmhost.StateRunning); err != nil {
			t.Fatalf("cycle %d: %v", i+1, err)
		}
		if _, err := mb.Run(ctxFor(t, cmdTimeout), "stop", "e1"); err != nil {
			t.Fatalf("cycle %d: %v", i+1, err)
		}
	}
	waitProcesses(t, h, 0, 0, time.Minute)
	v := waitState(t, mb, "e1", time.Minute, "stopped")
	if v.Restarts != 0 {
		t.Errorf("a user-stopped VM was restarted %d times", v.Restarts)
	}
	base.check(t, h, d.PID(), enduranceCycles)
}

// baseline is what a daemon home looks like before start/stop cycles: its
// files, the daemon's descriptor count and the sockets under it.
type baseline struct {
	files   map[string]vmSnapshot
	fds     int
	sockets []string
}

func takeBaseline(t *testing.T, h string, daemonPID int) baseline {
	t.Helper()
	return baseline{files: snapshot(t, h), fds: fdCount(t, daemonPID), sockets: sockets(h)}
}

// check asserts nothing leaked over the cycles: descriptors back to where
// they were, the same sockets, and every file intact.
func (b baseline) check(t *testing.T, h string, daemonPID, cycles int) {
	t.Helper()
	checkFDs(t, daemonPID, b.fds)
	if got := sockets(h); strings.Join(got, " ") != strings.Join(b.sockets, " ") {
		t.Errorf("sockets after %d cycles: %v, before: %v", cycles, got, b.sockets)
	}
	checkIntact(t, h, b.files)
}

// checkFDs waits (briefly: idle connections close asynchronously) for a
// process's descriptor count to come back to base.
func checkFDs(t *testing.T, pid, base int) {
	t.Helper()
	var n int
	err := rig.Poll(ctxFor(t, 30*time.Second), 200*time.Millisecond, "the daemon's descriptors to come back", func() (bool, error) {
		var err error
		n, err = procfs.FDCount(pid)
		return err == nil && n <= base, err
	})
	if err != nil {
		t.Errorf("daemon has %d descriptors open, %d before the cycles: %v", n, base, err)
		if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
			var targets []string
			for _, e := range ents {
				if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); err == nil {
					targets = append(targets, l)
				}
			}
			t.Logf("open descriptors: %s", strings.Join(targets, " "))
		}
	}
}

// TestDaemonKill9Fake kills the daemon with SIGKILL while three fake VMs
// run: they keep running, and a new daemon re-adopts them with the same
// vmhosts.
func TestDaemonKill9Fake(t *testing.T) {
	h := newHome(t)
	mb, d := mbFor(t, h)
	names := []string{"a1", "a2", "a3"}
	pids := map[string]int{}
	for _, n := range names {
		run(t, mb, "start", n, "-f", fakeSpec(t, mb, n, "on-failure"))
		pids[n] = vmhostPID(t, mb.VMDir(n))
	}
	before := snapshot(t, h)
	d.Kill()
	for _, n := range names {
		if !procfs.Alive(pids[n]) {
			t.Errorf("VM %s's vmhost (PID %d) died with the daemon", n, pids[n])
		}
		if err := answersStatus(mb.VMDir(n), vmhost.StateRunning); err != nil {
			t.Errorf("VM %s after the daemon's death: %v", n, err)
		}
	}
	startDaemon(t, mb)
	vms, err := mb.List(ctxFor(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(vms) != len(names) {
		t.Fatalf("new daemon lists %d VMs: %+v", len(vms), vms)
	}
	for _, v := range vms {
		if v.State != "running" || v.PID != pids[v.Name] {
			t.Errorf("VM %s re-adopted as %s with PID %d, want running with PID %d", v.Name, v.State, v.PID, pids[v.Name])
		}
	}
	if p := processes(t, h); len(p.VMHosts) != len(names) || len(p.Daemons) != 1 {
		t.Errorf("processes after re-adoption: %s", p)
	}
	// The adopted VMs obey the new daemon.
	run(t, mb, append([]string{"stop"}, names...)...)
	waitProcesses(t, h, 0, 0, time.Minute)
	checkIntact(t, h, before)
}

// TestRestartPolicyFake kills a fake VM's vmhost with SIGKILL and makes
// another fake VM crash: the VM with restart "no" shows crashed with a
// reason, the one with "on-failure" comes back, and the events say so.
func TestRestartPolicyFake(t *testing.T) {
	h := newHome(t)
	mb, _ := mbFor(t, h)
	run(t, mb, "start", "no1", "-f", fakeSpec(t, mb, "no1", "no"))
	run(t, mb, "start", "of1", "-f", fakeSpec(t, mb, "of1", "on-failure"))
	before := snapshot(t, h)

	// vmhost killed: a crash.
	pid := vmhostPID(t, mb.VMDir("no1"))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	v := waitState(t, mb, "no1", time.Minute, "crashed")
	if v.Reason == "" {
		t.Errorf("crashed VM has no reason: %+v", v)
	}
	// The stale socket and PID file do not block the next start.
	run(t, mb, "start", "no1", "-f", fakeSpec(t, mb, "no1", "no"))
	if err := answersStatus(mb.VMDir("no1"), vmhost.StateRunning); err != nil {
		t.Error(err)
	}

	for i, crash := range []syscall.Signal{syscall.SIGKILL, syscall.SIGUSR1} {
		old := vmhostPID(t, mb.VMDir("of1"))
		if err := syscall.Kill(old, crash); err != nil {
			t.Fatal(err)
		}
		err := rig.Poll(ctxFor(t, 2*time.Minute), 100*time.Millisecond, "of1 restarted", func() (bool, error) {
			v, err := mb.Get(ctxFor(t, time.Minute), "of1")
			if err != nil {
				return false, err
			}
			return v.State == "running" && v.Restarts >= i+1 && v.PID != old && v.PID != 0, fmt.Errorf("state %s, restarts %d, PID %d", v.State, v.Restarts, v.PID)
		})
		if err != nil {
			t.Fatalf("after %v of of1's vmhost: %v", crash, err)
		}
	}
	events := readEvents(t, mb)
	crashes := 0
	for _, e := range events {
		if e.VM == "of1" && e.Type == "crashed" {
			crashes++
		}
	}
	if crashes < 2 {
		t.Errorf("events show %d crashes of of1, want 2: %+v", crashes, events)
	}
	run(t, mb, "stop", "no1", "of1")
	waitProcesses(t, h, 0, 0, time.Minute)
	checkIntact(t, h, before)
}

// event is one line of GET /v1/events.
type event struct {
	VM       string `json:"vm"`
	Type     string `json:"type"`
	State    string `json:"state"`
	Reason   string `json:"reason"`
	ExitCode *int   `json:"exit_code"`
}

// readEvents reads the daemon's event history.
func readEvents(t *testing.T, mb *rig.MB) []event {
	t.Helper()
	body, err := rig.DaemonGet(ctxFor(t, time.Minute), mb.Socket(), "/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	var out []event
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("bad event line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

// TestFullDisk puts $MB_HOME on a small tmpfs and fills it: creating a VM
// fails with a clear "no space" error, the existing VM's spec and state are
// untouched, and once space is freed the same start works.
func TestFullDisk(t *testing.T) {
	testenv.Root(t, "mounting a tmpfs")
	mbBin := needMB(t)
	h := newHome(t)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", h).CombinedOutput(); err != nil {
		testenv.Need(t, fmt.Sprintf("a tmpfs on %s: %v: %s", h, err, out))
	}
	t.Cleanup(func() {
		if err := rig.KillAll(h); err != nil {
			t.Errorf("kill leftovers: %v", err)
		}
		if out, err := exec.Command("umount", h).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", h, err, out)
			_ = exec.Command("umount", "-l", h).Run()
		}
	})
	if err := os.MkdirAll(filepath.Join(h, "vms"), 0o700); err != nil {
		t.Fatal(err)
	}
	mb := &rig.MB{Bin: mbBin, Home: h}
	startDaemon(t, mb)
	run(t, mb, "start", "keep", "-f", fakeSpec(t, mb, "keep", "no"))
	newSpec := fakeSpec(t, mb, "new1", "no")
	before := snapshot(t, h)
	keepPID := vmhostPID(t, mb.VMDir("keep"))

	filler := fillDisk(t, h)
	_, err := mb.Run(ctxFor(t, cmdTimeout), "start", "new1", "-f", newSpec)
	if err == nil {
		t.Fatal("mb start succeeded on a full disk")
	}
	if !isNoSpace(err.Error()) {
		t.Errorf("error on a full disk does not say so: %v", err)
	}
	t.Logf("full disk: %v", err)
	// The existing VM is untouched and still served.
	checkIntact(t, h, before)
	if err := answersStatus(mb.VMDir("keep"), vmhost.StateRunning); err != nil {
		t.Error(err)
	}
	vms, err := mb.List(ctxFor(t, time.Minute))
	if err != nil {
		t.Fatalf("mb ls on a full disk: %v", err)
	}
	for _, v := range vms {
		switch v.Name {
		case "keep":
			if v.State != "running" || v.PID != keepPID {
				t.Errorf("keep is %s with PID %d on a full disk, want running with PID %d", v.State, v.PID, keepPID)
			}
		case "new1":
			if v.State == "running" {
				t.Errorf("new1 runs although its creation failed: %+v", v)
			}
		default:
			t.Errorf("unexpected VM %+v", v)
		}
	}

	// Space back: the same command works, nothing stale blocks it.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	run(t, mb, "start", "new1", "-f", newSpec)
	if err := answersStatus(mb.VMDir("new1"), vmhost.StateRunning); err != nil {
		t.Error(err)
	}
	run(t, mb, "stop", "keep", "new1")
	waitProcesses(t, h, 0, 0, time.Minute)
	checkIntact(t, h, before)
}

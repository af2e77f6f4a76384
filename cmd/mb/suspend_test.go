package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mbvm/mb/backend/qemu"
	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/vm/snapshot"
)

// One mini VM goes through suspend and resume, the refusals, and kill -9
// of the daemon and of vmhost in the middle of a suspend. The subtests
// run in order on the same VM (one boot for all of them).
func TestQEMUSuspendResume(t *testing.T) {
	e := requireVM(t)
	hold := filepath.Join(e.root, "hold")
	e.extraEnv = append(e.extraEnv, qemu.SuspendHoldEnv+"="+hold)
	const name = "sus"
	dir := filepath.Join(e.home, "vms", name)
	e.ok("start", name, "--memory", "256M")

	// plant writes a marker into guest memory (the initramfs root is RAM)
	// and starts a long sleep, returning the marker and the sleep's PID.
	plant := func(t *testing.T) (string, string) {
		t.Helper()
		marker := strconv.FormatInt(time.Now().UnixNano(), 36)
		out := e.ok("exec", name, "--", "sh", "-c", "echo "+marker+" > /marker; sleep 100000 >/dev/null 2>&1 </dev/null & echo $!")
		return marker, strings.TrimSpace(out)
	}
	// survived checks that marker and process are still in the guest.
	survived := func(t *testing.T, marker, pid string) {
		t.Helper()
		out := e.ok("exec", name, "--", "sh", "-c", "cat /marker; kill -0 "+pid+" && echo alive")
		if !strings.Contains(out, marker) || !strings.Contains(out, "alive") {
			t.Fatalf("after the resume the guest lost its state: want marker %s and sleep %s alive, got %q", marker, pid, out)
		}
	}
	state := func(t *testing.T) string {
		t.Helper()
		return e.vm(name).State
	}
	suspend := func(t *testing.T) {
		t.Helper()
		out := e.ok("suspend", name, "--json")
		if !strings.Contains(out, `"state": "suspended"`) {
			t.Fatalf("mb suspend --json: want state suspended, got %s", out)
		}
	}

	// A cold-booted guest's RAM is a memfd, not a file in the VM
	// directory: a file there costs every boot its disk allocation and
	// write-back (0.4 s of a 2.4 s boot).
	if _, err := os.Lstat(filepath.Join(dir, snapshot.MemoryName)); !os.IsNotExist(err) {
		t.Errorf("a cold-booted VM has %s in its directory (err %v): its RAM should be a memfd", snapshot.MemoryName, err)
	}
	if pidText, err := os.ReadFile(filepath.Join(dir, layout.QEMUPID)); err != nil {
		t.Error(err)
	} else if maps, err := os.ReadFile("/proc/" + strings.TrimSpace(string(pidText)) + "/maps"); err != nil {
		t.Error(err)
	} else if !strings.Contains(string(maps), "/memfd:mb-guest-ram") {
		t.Errorf("QEMU does not map the guest RAM memfd; its maps:\n%s", maps)
	}

	marker, pid := plant(t)
	t.Run("suspend and resume", func(t *testing.T) {
		suspend(t)
		if s := state(t); s != api.StateSuspended {
			t.Fatalf("mb ls shows %s after a suspend, want suspended", s)
		}
		if pids := e.vmhostPIDs(name); len(pids) != 0 {
			t.Fatalf("vmhost still runs after a suspend: %v", pids)
		}
		for _, f := range []string{snapshot.ManifestName, snapshot.StateName, snapshot.MemoryName} {
			st, err := os.Stat(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
			}
		}
		// The guest clock stands still while suspended: let it fall
		// behind, so that a clock left unset shows.
		time.Sleep(4 * time.Second)
		e.ok("start", name)
		survived(t, marker, pid)
		if snapshot.Suspended(dir) {
			t.Fatal("the suspend manifest is still there after the resume")
		}
		// The clock is set once the agent answers; the exec goes through
		// the same agent, after it.
		e.eventually("the guest clock within 2 s of the host's", func() bool {
			before := time.Now().Unix()
			out := e.ok("exec", name, "--", "date", "+%s")
			after := time.Now().Unix()
			g, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
			return err == nil && g >= before-2 && g <= after+2
		})
	})

	t.Run("a restore with other memory is refused", func(t *testing.T) {
		suspend(t)
		specPath := filepath.Join(dir, "spec.yaml")
		orig, err := os.ReadFile(specPath)
		if err != nil {
			t.Fatal(err)
		}
		changed := strings.Replace(string(orig), "memory: 256M", "memory: 320M", 1)
		if changed == string(orig) {
			t.Fatalf("spec.yaml has no memory: 256M line:\n%s", orig)
		}
		if err := os.WriteFile(specPath, []byte(changed), 0o600); err != nil {
			t.Fatal(err)
		}
		r := e.mb("start", name)
		if r.code == 0 || !strings.Contains(r.stderr, "memory 256 MiB (saved) vs 320 MiB (now)") || !strings.Contains(r.stderr, "--cold") {
			t.Fatalf("mb start with other memory: want a refusal naming the memory and --cold, got %s", r)
		}
		if !snapshot.Suspended(dir) {
			t.Fatal("a refused restore dropped the saved state")
		}
		// Back to the saved memory size: the state was left intact.
		if err := os.WriteFile(specPath, orig, 0o600); err != nil {
			t.Fatal(err)
		}
		e.ok("start", name)
		survived(t, marker, pid)
	})

	t.Run("a truncated state is refused, --cold boots", func(t *testing.T) {
		suspend(t)
		p := filepath.Join(dir, snapshot.StateName)
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, st.Size()/2); err != nil {
			t.Fatal(err)
		}
		r := e.mb("start", name)
		if r.code == 0 || !strings.Contains(r.stderr, "damaged") || !strings.Contains(r.stderr, "--cold") {
			t.Fatalf("mb start on a truncated state: want a refusal saying it is damaged and naming --cold, got %s", r)
		}
		e.ok("start", name, "--cold")
		if snapshot.Suspended(dir) {
			t.Fatal("--cold left the saved state behind")
		}
		if out := e.ok("exec", name, "--", "sh", "-c", "cat /marker 2>/dev/null || echo none"); strings.TrimSpace(out) != "none" {
			t.Fatalf("--cold did not boot afresh: /marker holds %q", out)
		}
		marker, pid = plant(t)
	})

	// midSuspend starts mb suspend with the hold file present and returns
	// once the device state is saved and the manifest not yet written.
	midSuspend := func(t *testing.T) (wait func()) {
		t.Helper()
		if err := os.WriteFile(hold, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := e.command(t.Context(), "suspend", name)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		e.eventually("the device state saved", func() bool {
			_, err := os.Stat(filepath.Join(dir, snapshot.StateName))
			return err == nil
		})
		if snapshot.Suspended(dir) {
			t.Fatal("the manifest was written while the suspend was held")
		}
		return func() { _ = cmd.Wait() }
	}

	t.Run("snapshot, start --from and clones", func(t *testing.T) {
		snapshotAndClone(t, e, name, plant, survived)
		marker, pid = plant(t)
	})

	t.Run("kill -9 of the daemon mid-suspend", func(t *testing.T) {
		wait := midSuspend(t)
		dpid := e.daemonPID()
		if dpid <= 0 {
			t.Fatal("no daemon PID")
		}
		if err := syscall.Kill(dpid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		wait()
		if err := os.Remove(hold); err != nil {
			t.Fatal(err)
		}
		// vmhost finishes the suspend on its own; a new daemon finds the
		// VM suspended with a complete state.
		e.eventually("the VM suspended", func() bool { return state(t) == api.StateSuspended })
		e.ok("start", name)
		survived(t, marker, pid)
	})

	t.Run("kill -9 of vmhost mid-suspend", func(t *testing.T) {
		wait := midSuspend(t)
		pids := e.vmhostPIDs(name)
		if len(pids) != 1 {
			t.Fatalf("want one vmhost, got %v", pids)
		}
		if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		wait()
		_ = os.Remove(hold)
		e.eventually("the VM crashed", func() bool { return state(t) == api.StateCrashed })
		if snapshot.Suspended(dir) {
			t.Fatal("a suspend killed before its manifest left a manifest")
		}
		// The partial state is never resumed: the next start boots.
		e.ok("start", name)
		if out := e.ok("exec", name, "--", "sh", "-c", "cat /marker 2>/dev/null || echo none"); strings.TrimSpace(out) != "none" {
			t.Fatalf("a partial state was resumed: /marker holds %q", out)
		}
	})
}

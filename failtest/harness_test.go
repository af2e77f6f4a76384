package failtest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mbvm/mb/bench/procfs"
	"github.com/mbvm/mb/bench/rig"
	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/internal/testenv"
	"github.com/mbvm/mb/vmhost"
)

// Generous deadlines: a busy 2-core machine under TCG must not turn a
// correct test red. Speed is measured by the bench, never asserted here.
const (
	bootTimeout = 3 * time.Minute
	stopTimeout = 90 * time.Second
	cmdTimeout  = 2 * time.Minute
)

// needVMHost fails the test when vmhost did not build (TestMain already
// refuses to run without it, so this only documents the dependency).
func needVMHost(t *testing.T) string {
	t.Helper()
	if suite.bins.VMHostErr != nil {
		t.Fatalf("vmhost did not build: %v", suite.bins.VMHostErr)
	}
	return suite.bins.VMHost
}

// missing ends the test through testenv.Need.
func missing(t *testing.T, what string, err error) {
	t.Helper()
	testenv.Need(t, fmt.Sprintf("%s is missing: %v", what, err))
}

// needMB returns the mb binary, or skips (fails under MB_REQUIRE_VM=1).
func needMB(t *testing.T) string {
	t.Helper()
	if suite.bins.MBErr != nil {
		missing(t, "the mb CLI", suite.bins.MBErr)
	}
	return suite.bins.MB
}

// needImage returns the mini image, or skips (fails under MB_REQUIRE_VM=1).
// It also takes the machine-wide VM lock for the rest of the test.
func needImage(t *testing.T) *rig.Image {
	t.Helper()
	if suite.imgErr != nil {
		missing(t, "the mini image (run make image)", suite.imgErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	release, err := rig.VMSlot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return suite.img
}

// newHome makes a short temporary $MB_HOME (with the mini image linked in
// when it exists). At the end of the test every process still running from
// it is killed and counted as a leak, and the directory is removed.
func newHome(t *testing.T) string {
	t.Helper()
	h, err := rig.NewHome("mbf")
	if err != nil {
		t.Fatal(err)
	}
	if suite.img != nil {
		if err := rig.LinkImage(h, suite.img); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		p, err := rig.FindProcesses(h)
		if err == nil && p.Total() > 0 {
			if !t.Failed() {
				t.Errorf("processes left running at the end of the test: %s", p)
			}
			if err := rig.KillAll(h); err != nil {
				t.Errorf("kill leftovers: %v", err)
			}
		}
		if t.Failed() {
			keepLogs(t, h)
		}
		_ = os.RemoveAll(h)
	})
	return h
}

// keepLogs copies the logs of a failed test's home into the test output.
func keepLogs(t *testing.T, h string) {
	_ = filepath.WalkDir(h, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if n := d.Name(); strings.HasSuffix(n, ".log") || strings.HasSuffix(n, ".out") {
			if n == layout.SerialLog {
				return nil
			}
			data, err := os.ReadFile(p)
			if err == nil {
				if len(data) > 4000 {
					data = data[len(data)-4000:]
				}
				t.Logf("--- %s (tail) ---\n%s", p, data)
			}
		}
		return nil
	})
}

// testLogger writes to the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// ctxFor returns a context that ends after d or at the end of the test.
func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// mbFor returns an mb runner for home, its daemon started and killed (not
// stopped: VMs survive it) at the end of the test.
func mbFor(t *testing.T, h string, env ...string) (*rig.MB, *rig.Daemon) {
	t.Helper()
	mb := &rig.MB{Bin: needMB(t), Home: h, Env: env}
	d := startDaemon(t, mb)
	return mb, d
}

// startDaemon starts the daemon and arranges for it to be killed at the
// end of the test.
func startDaemon(t *testing.T, mb *rig.MB) *rig.Daemon {
	t.Helper()
	d, err := mb.StartDaemon(ctxFor(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Kill)
	return d
}

// run runs an mb command that must succeed and returns its output.
func run(t *testing.T, mb *rig.MB, args ...string) string {
	t.Helper()
	out, err := mb.Run(ctxFor(t, cmdTimeout), args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// fakeSpec writes the spec of a fake-backend VM and returns its path.
func fakeSpec(t *testing.T, mb *rig.MB, name, restart string) string {
	t.Helper()
	p, err := mb.WriteSpec(name, fmt.Sprintf("name: %s\nbackend: fake\nrestart: %q\n", name, restart))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// miniSpec writes the spec of a mini VM and returns its path.
func miniSpec(t *testing.T, mb *rig.MB, name, restart string) string {
	t.Helper()
	p, err := mb.WriteSpec(name, fmt.Sprintf("name: %s\nimage: mini\nmemory: 256M\ncpus: 1\nrestart: %q\n", name, restart))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// vmSnapshot is what must survive every failure: the spec's bytes and the
// names and sizes of the disks in a VM's directory.
type vmSnapshot struct {
	spec  [sha256.Size]byte
	disks map[string]int64
}

// snapshot records every VM directory of h.
func snapshot(t *testing.T, h string) map[string]vmSnapshot {
	t.Helper()
	out := map[string]vmSnapshot{}
	ents, err := os.ReadDir(filepath.Join(h, "vms"))
	if err != nil {
		t.Fatalf("list VMs: %v", err)
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(h, "vms", e.Name())
		data, err := os.ReadFile(filepath.Join(dir, "spec.yaml"))
		if err != nil {
			t.Fatalf("VM %s: %v", e.Name(), err)
		}
		s := vmSnapshot{spec: sha256.Sum256(data), disks: map[string]int64{}}
		files, _ := os.ReadDir(dir)
		for _, f := range files {
			if n := f.Name(); strings.HasSuffix(n, ".qcow2") || strings.HasSuffix(n, ".img") || strings.HasSuffix(n, ".raw") || strings.HasSuffix(n, ".iso") {
				if info, err := f.Info(); err == nil {
					s.disks[n] = info.Size()
				}
			}
		}
		out[e.Name()] = s
	}
	return out
}

// checkIntact compares h's VM directories with an earlier snapshot: every
// VM is still there with the same spec and its disks (a disk may grow, a
// qcow2 overlay does as the guest writes, but never vanish or shrink to 0).
func checkIntact(t *testing.T, h string, before map[string]vmSnapshot) {
	t.Helper()
	after := snapshot(t, h)
	for name, b := range before {
		a, ok := after[name]
		if !ok {
			t.Errorf("VM directory %s is gone", name)
			continue
		}
		if a.spec != b.spec {
			t.Errorf("VM %s: spec.yaml changed", name)
		}
		for d, size := range b.disks {
			if got, ok := a.disks[d]; !ok || got == 0 {
				t.Errorf("VM %s: disk %s (%d bytes) is gone or empty", name, d, size)
			}
		}
	}
}

// processes returns the mb, vmhost and QEMU processes of h.
func processes(t *testing.T, h string) rig.Processes {
	t.Helper()
	p, err := rig.FindProcesses(h)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitProcesses polls until h has exactly the given numbers of vmhost and
// QEMU processes (orphans show up as too many; the daemon is not counted).
func waitProcesses(t *testing.T, h string, vmhosts, qemus int, within time.Duration) rig.Processes {
	t.Helper()
	var p rig.Processes
	err := rig.Poll(ctxFor(t, within), 50*time.Millisecond, fmt.Sprintf("%d vmhost(s) and %d qemu(s)", vmhosts, qemus), func() (bool, error) {
		var err error
		p, err = rig.FindProcesses(h)
		if err != nil {
			return false, err
		}
		return len(p.VMHosts) == vmhosts && len(p.QEMUs) == qemus, nil
	})
	if err != nil {
		t.Fatalf("%v; found %s", err, p)
	}
	return p
}

// waitState polls `mb ls --json` until the VM is in one of states.
func waitState(t *testing.T, mb *rig.MB, name string, within time.Duration, states ...string) *rig.VM {
	t.Helper()
	v, err := mb.WaitState(ctxFor(t, within), name, states...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// vmhostPID reads a VM's vmhost.pid.
func vmhostPID(t *testing.T, dir string) int {
	t.Helper()
	return readPID(t, filepath.Join(dir, "vmhost.pid"))
}

// qemuPID reads a VM's qemu.pid.
func qemuPID(t *testing.T, dir string) int {
	t.Helper()
	return readPID(t, filepath.Join(dir, "qemu.pid"))
}

func readPID(t *testing.T, p string) int {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read PID file: %v", err)
	}
	var pid int
	if _, err := fmt.Sscan(strings.TrimSpace(string(data)), &pid); err != nil || pid <= 0 {
		t.Fatalf("bad PID file %s: %q", p, data)
	}
	return pid
}

// answersStatus reports whether the VM's vmhost answers status with state.
func answersStatus(dir, state string) error {
	resp, err := vmhost.NewClient(filepath.Join(dir, "vmhost.sock")).Call(context.Background(), vmhost.Request{Method: vmhost.MethodStatus})
	if err != nil {
		return err
	}
	if resp.State != state {
		return fmt.Errorf("vmhost in %s says %s, want %s", dir, resp.State, state)
	}
	return nil
}

// fdCount returns the number of open descriptors of pid.
func fdCount(t *testing.T, pid int) int {
	t.Helper()
	n, err := procfs.FDCount(pid)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// sockets lists the socket files under dir (recursively), sorted.
func sockets(dir string) []string {
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type()&fs.ModeSocket != 0 {
			out = append(out, p)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// lineWriter collects lines for logging from several goroutines.
type lineWriter struct {
	mu    sync.Mutex
	lines []string
}

func (w *lineWriter) add(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.lines) < 50 {
		w.lines = append(w.lines, fmt.Sprintf(format, args...))
	}
}

func (w *lineWriter) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.lines...)
}

// isNoSpace reports whether an error message says the disk is full.
func isNoSpace(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "no space") || strings.Contains(m, "disk full") || strings.Contains(m, "enospc")
}

// fillDisk writes a file in dir until the file system is full and returns
// its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !isNoSpace(err.Error()) {
				t.Fatalf("fill %s: %v", dir, err)
			}
			break
		}
	}
	// Smaller writes take the last partial block.
	small := buf[:512]
	for {
		if _, err := f.Write(small); err != nil {
			break
		}
	}
	return p
}

// discard drains a reader.
func discard(r io.Reader) { _, _ = io.Copy(io.Discard, r) }

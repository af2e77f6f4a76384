package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mbvm/mb/daemon"
)

// mb start -f with a spec over 1 MiB fails with one short line (it created
// the VM from a truncated spec, then printed a 2 MB error).
func TestStartHugeSpecFile(t *testing.T) {
	e := newEnv(t)
	var b strings.Builder
	b.WriteString("name: big\nbackend: fake\nuser_data: |\n")
	for b.Len() < 1200<<10 {
		b.WriteString("  # padding padding padding padding padding padding padding padding\n")
	}
	b.WriteString("cpus: 4\n")
	f := filepath.Join(e.home, "big.yaml")
	if err := os.WriteFile(f, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.mb("start", "big", "-f", f)
	if r.code == 0 || len(r.stderr) > 300 || !strings.Contains(r.stderr, "1 MiB") {
		t.Fatalf("mb start -f big.yaml: exit %d, %d bytes on stderr: %.300s; want a failure in one short line naming 1 MiB", r.code, len(r.stderr), r.stderr)
	}
	if vms := e.list(); len(vms) != 0 {
		t.Errorf("VMs after the refused start: %+v", vms)
	}
}

// A vmhost lock held by a process that has not written its PID yet gives
// PID 0. Stopping such an adopted VM killed PID 0, the daemon's own
// process group; now nothing is signalled and the stop says why.
func TestStopNeverSignalsPIDZero(t *testing.T) {
	e := newEnv(t)
	e.ok("start", "z", "--backend", "fake")
	e.ok("stop", "z")
	e.ok("daemon", "stop")
	// Hold the VM's vmhost lock without a PID in it.
	lf, err := os.OpenFile(filepath.Join(e.home, "vms", "z", "vmhost.lock"), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	e.list() // a new daemon adopts z with PID 0
	pid := e.daemonPID()
	for _, args := range [][]string{{"stop", "--force", "z"}, {"stop", "z"}} {
		r := e.mb(args...)
		if !alive(pid) {
			t.Fatalf("mb %s killed the daemon: %s", strings.Join(args, " "), r)
		}
		if r.code == 0 || !strings.Contains(r.stderr, "not known") {
			t.Errorf("mb %s: %s; want a failure saying the vmhost PID is not known", strings.Join(args, " "), r)
		}
	}
}

// A symlink where a VM directory would be is named as the cause; it was
// "no VM named ln: create it with mb start ln", which is what was done.
func TestStartOverStrayDirectory(t *testing.T) {
	e := newEnv(t)
	if err := os.MkdirAll(filepath.Join(e.home, "vms"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(t.TempDir(), filepath.Join(e.home, "vms", "ln")); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"start", "ln", "--backend", "fake"}, {"info", "ln"}, {"stop", "ln"}} {
		r := e.mb(args...)
		if r.code != 1 || !strings.Contains(r.stderr, "symlink") || strings.Contains(r.stderr, "create it with") {
			t.Errorf("mb %s: %s; want exit 1 naming the symlink", strings.Join(args, " "), r)
		}
	}
}

// Hundreds of clients that trickle a request body do not keep the daemon
// from answering: with its descriptors limited to 256, 300 such
// connections exhausted them and `mb ls` hung. (Clients that send nothing
// are closed by the header timeout, and evicted first at the cap.)
func TestTricklingClientsDoNotStarveTheAPI(t *testing.T) {
	e := newEnv(t)
	daemonCmd := exec.Command("sh", "-c", `ulimit -n 256 && exec "$0" daemon --foreground`, filepath.Join(binDir, "mb"))
	daemonCmd.Env = append(os.Environ(), "MB_HOME="+e.home, "MB_VMHOST=")
	daemonCmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := daemonCmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = daemonCmd.Wait() }()
	e.eventually("the daemon to answer", func() bool { return e.mb("daemon", "status").code == 0 })
	e.ok("start", "t", "--backend", "fake")

	sock := filepath.Join(e.home, "mb.sock")
	stop := make(chan struct{})
	defer close(stop)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 300; i++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		go func() {
			if _, err := c.Write([]byte("POST /v1/vms HTTP/1.1\r\nHost: mb\r\nContent-Length: 100000\r\n\r\nn")); err != nil {
				return
			}
			for {
				select {
				case <-stop:
					return
				case <-time.After(500 * time.Millisecond):
				}
				if _, err := c.Write([]byte("a")); err != nil {
					return
				}
			}
		}()
	}
	for i := 0; i < 5; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := e.command(ctx, "ls")
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil || !strings.Contains(string(out), "t ") {
			t.Fatalf("mb ls %d among 300 trickling connections: %v: %s", i, err, out)
		}
	}
}

// environOf reads a process's environment from /proc.
func environOf(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", itoa(pid), "environ"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

func hasEnv(env []string, prefix string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, prefix) {
			return true
		}
	}
	return false
}

// The daemon (and every vmhost) keeps only the documented variables of
// the command that started it, shows them in `mb daemon status`, and
// `mb start` warns when the caller's MB_ACCEL or QEMU differs from the
// daemon's. The whole environment was inherited, silently.
func TestDaemonEnvironmentIsClean(t *testing.T) {
	e := newEnv(t)
	e.extraEnv = []string{"MB_TEST_SECRET=1", "MB_ACCEL=tcg", "MB_FAKE_START_DELAY=1ms"}
	e.ok("start", "v", "--backend", "fake")
	for what, pid := range map[string]int{"daemon": e.daemonPID(), "vmhost": e.vm("v").PID} {
		env := environOf(t, pid)
		if hasEnv(env, "MB_TEST_SECRET=") || !hasEnv(env, "MB_ACCEL=tcg") || !hasEnv(env, "MB_FAKE_START_DELAY=") || !hasEnv(env, "PATH=") {
			t.Errorf("%s environment %q: want PATH, MB_ACCEL and MB_FAKE_* kept, MB_TEST_SECRET dropped", what, env)
		}
	}
	st := e.ok("daemon", "status")
	if !strings.Contains(st, "MB_ACCEL=tcg") || strings.Contains(st, "MB_TEST_SECRET") {
		t.Errorf("mb daemon status does not show the kept environment:\n%s", st)
	}

	// Another MB_ACCEL, and another QEMU first on PATH, than the daemon's.
	bin := t.TempDir()
	fakeQEMU := filepath.Join(bin, daemonQEMUName())
	if err := os.WriteFile(fakeQEMU, []byte("#!/bin/sh\necho 'QEMU emulator version 1.0.0'\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	e.extraEnv = []string{"MB_ACCEL=kvm", "PATH=" + bin + ":" + os.Getenv("PATH")}
	r := e.mb("start", "w", "--no-wait", "--timeout", "1m")
	if !strings.Contains(r.stderr, `MB_ACCEL is "kvm" here but "tcg" in the mb daemon`) || !strings.Contains(r.stderr, "the QEMU on your PATH is "+fakeQEMU) {
		t.Errorf("mb start with another MB_ACCEL and QEMU than the daemon's: %s; want both warnings", r)
	}
}

// A VM's qemu_binary chooses its QEMU: the binary named is the one run
// (here a stand-in too old to be accepted, whose path the error names).
func TestSpecQEMUBinary(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	old := filepath.Join(dir, "old-qemu")
	if err := os.WriteFile(old, []byte("#!/bin/sh\necho 'QEMU emulator version 1.0.0'\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	kernel := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(kernel, []byte("not a kernel"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "q.yaml")
	if err := os.WriteFile(f, []byte("name: q\nkernel: "+kernel+"\ncmdline: console=ttyS0\nqemu_binary: "+old+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.mb("start", "q", "-f", f, "--timeout", "1m")
	if r.code == 0 || !strings.Contains(r.stderr, old+" is QEMU 1.0.0") {
		t.Errorf("mb start with qemu_binary %s: %s; want the start refused naming that binary", old, r)
	}
}

func daemonQEMUName() string { return daemon.QEMUName() }

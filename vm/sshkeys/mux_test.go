package sshkeys

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mbvm/mb/internal/testenv"
)

// The real ssh client: StartMux authenticates once and stays as the
// shared connection; commands on MuxArgv ride on it (one connection to
// the server for all of them) with their exit codes; once the master is
// gone, MuxAlive says so and clears its socket.
func TestMuxSharesOneConnection(t *testing.T) {
	sshBin := testenv.Tool(t, "ssh", "openssh-client")
	dir, _, srv := keyedServer(t)
	tg := Target{Name: "vm", Dir: dir, Port: srv.Port}
	if tg.MuxPath() == "" {
		t.Fatalf("no control socket for the VM directory %s (%d bytes)", dir, len(dir))
	}
	if tg.MuxAlive() {
		t.Fatal("MuxAlive before any master was started")
	}
	if err := StartMux(ctxT(t), sshBin, tg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec.Command(sshBin, "-o", "ControlPath="+tg.MuxPath(), "-O", "exit", "x").Run() })
	if !tg.MuxAlive() {
		t.Fatal("no shared connection answers after StartMux")
	}
	if st, err := os.Lstat(tg.MuxPath()); err != nil || st.Mode()&os.ModeSocket == 0 {
		t.Fatalf("control socket %s: %v %v", tg.MuxPath(), st, err)
	}
	for i := range 2 {
		argv := MuxArgv(tg, []string{"echo", "hi"})
		out, err := exec.CommandContext(ctxT(t), sshBin, append([]string{"-F", "/dev/null", "-o", "BatchMode=yes"}, argv[1:]...)...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(string(out), "ran: echo hi") {
			t.Fatalf("command %d on the shared connection: err %v, output %q; want exit 3 and the remote output", i, err, out)
		}
	}
	if n := srv.conns.Load(); n != 1 {
		t.Errorf("the server saw %d connections for the master and two commands; want 1", n)
	}
	if out, err := exec.Command(sshBin, "-o", "ControlPath="+tg.MuxPath(), "-O", "exit", "x").CombinedOutput(); err != nil {
		t.Fatalf("ssh -O exit: %v %s", err, out)
	}
	if tg.MuxAlive() {
		t.Error("MuxAlive after the master exited")
	}
}

// A control socket nobody answers on (its ssh was killed) is removed, so
// that the next master can bind it; a too long VM path gets no sharing.
func TestMuxStaleSocketAndLongPath(t *testing.T) {
	tg := Target{Name: "vm", Dir: t.TempDir(), Port: 2222}
	ln, err := net.Listen("unix", tg.MuxPath())
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if tg.MuxAlive() {
		t.Fatal("MuxAlive on a socket nobody listens on")
	}
	if _, err := os.Lstat(tg.MuxPath()); !os.IsNotExist(err) {
		t.Errorf("the stale control socket is still there: %v", err)
	}
	// A new run of the VM on the same port never meets its last run's
	// master, whose connection may not have noticed the end yet.
	run1, run2 := tg, tg
	run1.Boot, run2.Boot = "a1", "a2"
	if run1.MuxPath() == run2.MuxPath() || run1.MuxPath() == tg.MuxPath() {
		t.Errorf("two runs of a VM share the control socket %s", run1.MuxPath())
	}
	long := Target{Name: "vm", Dir: filepath.Join("/tmp", strings.Repeat("d", 90)), Port: 2222}
	if p := long.MuxPath(); p != "" {
		t.Errorf("MuxPath for a %d-byte directory = %q; want none", len(long.Dir), p)
	}
	if argv := MuxArgv(long, nil); strings.Contains(strings.Join(argv, " "), "ControlPath") {
		t.Errorf("MuxArgv without a control socket: %v", argv)
	}
}

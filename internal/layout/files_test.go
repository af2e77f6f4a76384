package layout

import (
	"slices"
	"strings"
	"testing"
)

func TestBackendFiles(t *testing.T) {
	q := Backend("qemu")
	if q.Console != ConsoleSocket || q.SerialLog != SerialLog {
		t.Errorf("qemu files = %+v, want console %s and serial log %s", q, ConsoleSocket, SerialLog)
	}
	for _, s := range []string{QMPSocket, ConsoleSocket, AgentSocket} {
		if !slices.Contains(q.Sockets, s) {
			t.Errorf("qemu sockets %v lack %s", q.Sockets, s)
		}
	}
	q.Sockets[0] = "changed"
	if Backend("qemu").Sockets[0] == "changed" {
		t.Error("Backend returns the table itself: a caller can change it")
	}
	if f := Backend("fake"); len(f.Sockets) != 0 || f.Console != "" {
		t.Errorf("fake files = %+v, want none", f)
	}
	if f := Backend("nosuch"); len(f.Sockets) != 0 {
		t.Errorf("unknown backend files = %+v, want none", f)
	}
}

func TestStaleFiles(t *testing.T) {
	fake := StaleFiles("fake")
	if !slices.Equal(fake, []string{VMHostPID, VMHostSocket}) {
		t.Errorf("fake stale files = %v", fake)
	}
	all := StaleFiles("")
	for _, n := range []string{VMHostPID, VMHostSocket, QMPSocket, ConsoleSocket, AgentSocket} {
		if !slices.Contains(all, n) {
			t.Errorf("stale files of every backend %v lack %s", all, n)
		}
	}
	// qemu.pid must survive: the next start uses it to find a QEMU that
	// outlived its vmhost.
	if slices.Contains(all, QEMUPID) || slices.Contains(all, VMHostLock) {
		t.Errorf("stale files %v include the QEMU PID file or the lock", all)
	}
}

func TestCheckVMSocketPaths(t *testing.T) {
	home := "/" + strings.Repeat("x", 59) // 60 bytes
	// 60 + len("/vms/") + name + 1 + len(VMHostSocketTemp) <= 103.
	want := MaxSocketPath - 60 - len("/vms/") - 1 - len(VMHostSocketTemp)
	if err := CheckVMSocketPaths(home, strings.Repeat("a", want), "qemu"); err != nil {
		t.Errorf("a %d-character name: %v", want, err)
	}
	err := CheckVMSocketPaths(home, strings.Repeat("a", want+1), "qemu")
	if err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("a %d-character name: %v, want the allowed length", want+1, err)
	}
	if err := CheckSocketPath("/" + strings.Repeat("y", MaxSocketPath)); err == nil {
		t.Error("an over-long socket path was accepted")
	}
}

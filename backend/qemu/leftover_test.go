package qemu

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"
)

func TestIsOurQEMU(t *testing.T) {
	pid := "/h/vms/a/qemu.pid"
	cases := []struct {
		cmdline []string
		want    bool
	}{
		{[]string{"/usr/bin/qemu-system-x86_64", "-name", "a", "-pidfile", pid, "-S"}, true},
		{[]string{"/opt/homebrew/bin/qemu-system-aarch64 -name a -pidfile " + pid + " -S"}, true},
		{[]string{"/opt/homebrew/bin/qemu-system-aarch64 -name a -pidfile " + pid}, true},
		// Another VM's QEMU, or another program reusing the PID.
		{[]string{"/usr/bin/qemu-system-x86_64", "-pidfile", "/h/vms/b/qemu.pid"}, false},
		{[]string{"/usr/bin/qemu-system-x86_64", "-pidfile", pid + ".x"}, false},
		{[]string{"/bin/sleep", "-pidfile", pid}, false},
		{[]string{"/bin/sh -c echo -pidfile " + pid}, false},
		{nil, false},
	}
	for _, c := range cases {
		if got := isOurQEMU(c.cmdline, pid); got != c.want {
			t.Errorf("isOurQEMU(%q) = %v, want %v", c.cmdline, got, c.want)
		}
	}
}

// A qemu.pid that names a process which is not this VM's QEMU (a reused
// PID) is left alone.
func TestLeftoverIgnoresOtherProcesses(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if err := os.WriteFile(filepath.Join(dir, pidFileName), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := stopLeftover(context.Background(), slog.New(slog.DiscardHandler), dir); err != nil {
		t.Fatal(err)
	}
	if processGone(cmd.Process.Pid) {
		t.Error("stopLeftover killed a process that is not this VM's QEMU")
	}
}

// TestStartStopsLeftoverQEMU: a QEMU that outlived its vmhost (as on macOS,
// without Pdeathsig) and still writes this VM's qemu.pid is stopped by the
// next start, which then boots the VM.
func TestStartStopsLeftoverQEMU(t *testing.T) {
	img := miniImage(t)
	vmSlot(t)
	a, err := hostArch(runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	bin, err := exec.LookPath(binaryName(a))
	if err != nil {
		t.Fatal(err)
	}
	opts := vmOptions(t, img, "qtest-leftover", "")
	pidPath := filepath.Join(opts.Dir, pidFileName)
	old := exec.Command(bin, "-S", "-nodefaults", "-display", "none", "-machine", "none",
		"-name", "qtest-leftover", "-pidfile", pidPath,
		"-chardev", "socket,id=qmp,path="+filepath.Join(opts.Dir, qmpSockName)+",server=on,wait=off",
		"-mon", "chardev=qmp,mode=control")
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { _ = old.Wait(); close(waited) }()
	defer func() { _ = old.Process.Kill(); <-waited }()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if b, err := os.ReadFile(pidPath); err == nil && len(b) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the leftover QEMU did not write its PID file")
		}
		time.Sleep(20 * time.Millisecond)
	}

	vm := startVM(t, opts)
	if !processGone(old.Process.Pid) {
		t.Errorf("the leftover QEMU (PID %d) still runs after the new start", old.Process.Pid)
	}
	if vm.PID() == old.Process.Pid || processGone(vm.PID()) {
		t.Errorf("the new VM's QEMU (PID %d) does not run", vm.PID())
	}
}

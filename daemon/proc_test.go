package daemon

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// PIDs that must never be signalled are refused; a live process is
// signalled through its handle, and after it is gone the handle never
// reaches another process.
func TestProcRef(t *testing.T) {
	for _, pid := range []int{-1, 0, 1, os.Getpid()} {
		if _, err := openProc(pid); err == nil {
			t.Errorf("openProc(%d) succeeded", pid)
		}
		r := &run{pid: pid}
		if err := r.kill(); err == nil {
			t.Errorf("kill of run with PID %d succeeded", pid)
		}
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ref, err := openProc(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := ref.signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Error("sleep was not killed")
	}
	ref.close()
	if err := ref.signal(syscall.SIGKILL); err == nil {
		t.Error("signal through a closed handle succeeded")
	}
}

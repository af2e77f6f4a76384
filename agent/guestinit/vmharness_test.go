//go:build linux

package guestinit

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mbvm/mb/bench/testvm"

	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/vm/image"
)

// Generous deadlines: a busy 2-core machine under TCG must not turn a
// correct test red. Boot speed is measured, never asserted.
const (
	bootDeadline = 120 * time.Second
	stopDeadline = 90 * time.Second
)

// miniImage finds the mini image under $MB_HOME (or ~/.mb). Without it the
// test is skipped, or fails when MB_REQUIRE_VM=1.
func miniImage(t *testing.T) *image.Manifest {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skipf("the guestinit VM tests drive an x86_64 q35 guest; this host is %s", runtime.GOARCH)
	}
	_, m := testvm.Image(t, "mini")
	return m
}

// vmSlot takes the machine-wide VM test lock (testvm.Slot).
func vmSlot(t *testing.T) { testvm.Slot(t) }

// testVM is a bare qemu-system-x86_64 booting the mini image under TCG.
type testVM struct {
	cmd       *exec.Cmd
	serial    string
	qmp       string
	agentSock string
	started   time.Time
	exited    chan struct{}
	waitErr   error
}

// bootMini starts QEMU on the mini image with extra kernel parameters and
// makes sure it is gone when the test ends.
func bootMini(t *testing.T, m *image.Manifest, extraCmdline string, extraArgs ...string) *testVM {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		testvm.Missing(t, fmt.Sprintf("qemu-system-x86_64 not found: %v (apt-get install qemu-system-x86)", err))
	}
	vmSlot(t)
	// A short directory: unix socket paths must stay under 104 bytes.
	dir, err := os.MkdirTemp("", "mbgi-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	vm := &testVM{
		serial:    filepath.Join(dir, layout.SerialLog),
		qmp:       filepath.Join(dir, layout.QMPSocket),
		agentSock: filepath.Join(dir, layout.AgentSocket),
		exited:    make(chan struct{}),
	}
	cmdline := strings.TrimSpace(m.Cmdline + " " + extraCmdline)
	args := []string{
		"-machine", "q35", "-accel", "tcg", "-m", "256", "-smp", "1",
		"-nodefaults", "-no-user-config", "-nographic", "-monitor", "none",
		"-kernel", m.Path(m.Kernel), "-initrd", m.Path(m.Initrd), "-append", cmdline,
		"-serial", "file:" + vm.serial,
		"-qmp", "unix:" + vm.qmp + ",server=on,wait=off",
		"-device", "pvpanic-pci",
		"-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0,romfile=",
		"-device", "virtio-serial-pci",
		"-chardev", "socket,id=qga0,path=" + vm.agentSock + ",server=on,wait=off",
		"-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
		"-device", "virtio-rng-pci",
	}
	args = append(args, extraArgs...)
	vm.cmd = exec.Command("qemu-system-x86_64", args...)
	var stderr bytes.Buffer
	vm.cmd.Stderr = &stderr
	vm.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	vm.started = time.Now()
	if err := vm.cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	go func() {
		vm.waitErr = vm.cmd.Wait()
		if stderr.Len() > 0 {
			vm.waitErr = errors.Join(vm.waitErr, errors.New("qemu stderr: "+strings.TrimSpace(stderr.String())))
		}
		close(vm.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-vm.exited:
		default:
			_ = vm.cmd.Process.Kill()
			<-vm.exited
		}
	})
	return vm
}

// serialLog returns the serial console output so far.
func (vm *testVM) serialLog() string {
	data, _ := os.ReadFile(vm.serial)
	return string(data)
}

// waitSerial waits until the serial log contains s and returns how long
// after QEMU's start it was seen.
func (vm *testVM) waitSerial(t *testing.T, s string) time.Duration {
	t.Helper()
	deadline := time.Now().Add(bootDeadline)
	for {
		if strings.Contains(vm.serialLog(), s) {
			return time.Since(vm.started)
		}
		select {
		case <-vm.exited:
			if strings.Contains(vm.serialLog(), s) {
				return time.Since(vm.started)
			}
			t.Fatalf("qemu exited (%v) before %q appeared on the console:\n%s", vm.waitErr, s, tail(vm.serialLog()))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q not on the console after %s:\n%s", s, bootDeadline, tail(vm.serialLog()))
		}
	}
}

// waitExit waits for QEMU to exit by itself and returns its Wait error.
func (vm *testVM) waitExit(t *testing.T) error {
	t.Helper()
	select {
	case <-vm.exited:
		return vm.waitErr
	case <-time.After(stopDeadline):
		t.Fatalf("qemu still running %s after the shutdown request; console:\n%s", stopDeadline, tail(vm.serialLog()))
		return nil
	}
}

func tail(s string) string {
	const n = 3000
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

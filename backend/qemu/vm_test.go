package qemu

import (
	"context"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/vm/spec"
	"github.com/mbvm/mb/vmhost"
)

// TestVM boots one VM and reads it from every side, runs a second VM next
// to it, then stops both: the second with an auto stop, the first with
// stop mode acpi.
func TestVM(t *testing.T) {
	img := miniImage(t)
	vmSlot(t)
	opts := vmOptions(t, img, "qtest-1", "")
	fwdPort, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	opts.Spec.Forwards = []spec.Forward{{Host: fwdPort, Guest: 80}}
	vm := startVM(t, opts)

	t.Run("reaches running and prints the ready line", func(t *testing.T) {
		if s := vm.State(); s != vmhost.StateRunning && s != vmhost.StateStarting {
			t.Fatalf("state right after Start = %q, want running or starting", s)
		}
		waitSerial(t, vm, img.readyLine())
		if s := vm.State(); s != vmhost.StateRunning {
			t.Errorf("state after the ready line = %q, want running", s)
		}
	})

	t.Run("describes qemu, accelerator and SSH port", func(t *testing.T) {
		if vm.Backend() != "qemu" {
			t.Errorf("Backend = %q", vm.Backend())
		}
		d := vm.Describe()
		if d.Name != "qtest-1" || d.StartedAt.IsZero() {
			t.Errorf("Describe name/started = %q/%v", d.Name, d.StartedAt)
		}
		wantAccel := string(detectAccel(realHost()).Accel)
		if d.Details["accel"] != wantAccel || d.Details["accel_reason"] == "" {
			t.Errorf("accel = %v (%v), want %s", d.Details["accel"], d.Details["accel_reason"], wantAccel)
		}
		if d.Details["qemu_pid"] != vm.PID() || d.Details["qemu_version"] == "" {
			t.Errorf("qemu_pid/version = %v/%v, pid %d", d.Details["qemu_pid"], d.Details["qemu_version"], vm.PID())
		}
		port := vm.SSHPort()
		if port <= 0 || d.Details["ssh_port"] != port {
			t.Fatalf("SSHPort = %d, details %v", port, d.Details["ssh_port"])
		}
		if !strings.Contains(d.Details["cmdline"].(string), "mb.hostname=qtest-1") {
			t.Errorf("kernel command line %q lacks mb.hostname", d.Details["cmdline"])
		}
		if fw, _ := d.Details["forwards"].([]string); !slices.Equal(fw, []string{strconv.Itoa(fwdPort) + ":80"}) {
			t.Errorf("forwards = %v, want %d:80", d.Details["forwards"], fwdPort)
		}
		// QEMU itself listens on the forwards, on loopback only.
		for _, p := range []int{port, fwdPort} {
			conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), 10*time.Second)
			if err != nil {
				t.Errorf("forward 127.0.0.1:%d not listening: %v", p, err)
				continue
			}
			conn.Close()
			if ip := nonLoopbackIP(); ip != "" {
				if conn, err := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(p)), 10*time.Second); err == nil {
					conn.Close()
					t.Errorf("forward port %d answers on %s: it must bind 127.0.0.1 only", p, ip)
				}
			}
		}
		pidData, err := os.ReadFile(vm.cfg.path(pidFileName))
		if err != nil || strings.TrimSpace(string(pidData)) != strconv.Itoa(vm.PID()) {
			t.Errorf("%s = %q (%v), want %d", pidFileName, pidData, err, vm.PID())
		}
	})

	t.Run("refuses an unknown stop mode", func(t *testing.T) {
		if _, err := vm.StopMode(context.Background(), time.Second, "reboot"); err == nil || !strings.Contains(err.Error(), "accepted") {
			t.Errorf("StopMode reboot: err = %v", err)
		}
		if s := vm.State(); s != vmhost.StateRunning {
			t.Errorf("state after a refused stop = %q, want running", s)
		}
	})

	t.Run("a second VM runs beside it", func(t *testing.T) {
		opts2 := vmOptions(t, img, "qtest-2", "")
		// The first pick is the first VM's port: QEMU cannot forward it,
		// and Start must retry with another.
		picks := 0
		opts2.pickPort = func() (int, error) {
			picks++
			if picks == 1 {
				return vm.SSHPort(), nil
			}
			return freePort()
		}
		vm2 := startVM(t, opts2)
		if picks < 2 {
			t.Errorf("Start picked %d port(s); the taken one should have been retried", picks)
		}
		if vm2.SSHPort() == vm.SSHPort() || vm2.cfg.Dir == vm.cfg.Dir || vm2.PID() == vm.PID() {
			t.Fatalf("the two VMs share port %d / dir %s / pid %d", vm2.SSHPort(), vm2.cfg.Dir, vm2.PID())
		}
		waitSerial(t, vm2, img.readyLine())
		if s := vm.State(); s != vmhost.StateRunning {
			t.Errorf("first VM state = %q while the second runs", s)
		}

		// Auto stop starts with the guest agent when one answers, and
		// goes straight to the ACPI button otherwise.
		want := vmhost.ModeACPI
		if agentResponsive(t, vm2) {
			want = vmhost.ModeAgent
		}
		ctx, cancel := context.WithTimeout(context.Background(), stopDeadline)
		defer cancel()
		res, err := vm2.StopMode(ctx, stopDeadline, vmhost.ModeAuto)
		if err != nil {
			t.Fatalf("Stop auto: %v", err)
		}
		if res.StoppedBy != want {
			t.Errorf("auto stop: stopped_by = %q, want %s", res.StoppedBy, want)
		}
		if err := vm2.Wait(); err != nil {
			t.Errorf("Wait after auto stop = %v, want nil", err)
		}
		if s := vm2.State(); s != vmhost.StateStopped {
			t.Errorf("state after auto stop = %q", s)
		}
		if !processGone(vm2.PID()) {
			t.Errorf("qemu pid %d still runs after Stop", vm2.PID())
		}
		if s := vm.State(); s != vmhost.StateRunning {
			t.Errorf("first VM state = %q after the second stopped", s)
		}
	})

	t.Run("stop mode acpi powers the guest off", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), stopDeadline)
		defer cancel()
		res, err := vm.StopMode(ctx, stopDeadline, vmhost.ModeACPI)
		if err != nil {
			t.Fatalf("StopMode acpi: %v; serial log tail:\n%s", err, serialTail(vm))
		}
		if res.StoppedBy != vmhost.ModeACPI {
			t.Errorf("stopped_by = %q, want acpi", res.StoppedBy)
		}
		if err := vm.Wait(); err != nil {
			t.Errorf("Wait = %v, want nil (QEMU exits 0 after an ACPI poweroff)", err)
		}
		if vm.cmd.ProcessState == nil || vm.cmd.ProcessState.ExitCode() != 0 {
			t.Errorf("qemu exit: %v, want status 0", vm.cmd.ProcessState)
		}
		if s := vm.State(); s != vmhost.StateStopped {
			t.Errorf("state = %q, want stopped", s)
		}
		// Stopping a stopped VM is fine and keeps its answer.
		res, err = vm.StopMode(ctx, time.Second, "")
		if err != nil || res.StoppedBy != vmhost.ModeACPI {
			t.Errorf("second stop = %+v, %v; want acpi, nil", res, err)
		}
	})
}

// TestGuestPoweroff: a guest that powers itself off is a clean stop.
func TestGuestPoweroff(t *testing.T) {
	img := miniImage(t)
	vmSlot(t)
	vm := startVM(t, vmOptions(t, img, "qtest-off", "mb.selftest=poweroff"))
	if err := waitExit(t, vm); err != nil {
		t.Errorf("Wait = %v, want nil for a guest poweroff; serial log tail:\n%s", err, serialTail(vm))
	}
	if s := vm.State(); s != vmhost.StateStopped {
		t.Errorf("state = %q, want stopped", s)
	}
	if !strings.Contains(serialTail(vm), img.readyLine()) {
		t.Errorf("the guest powered off before its ready line; serial log tail:\n%s", serialTail(vm))
	}
}

// TestGuestPanic: a guest kernel panic reaches vmhost through pvpanic and
// is a crash.
func TestGuestPanic(t *testing.T) {
	img := miniImage(t)
	vmSlot(t)
	vm := startVM(t, vmOptions(t, img, "qtest-panic", "mb.selftest=panic"))
	err := waitExit(t, vm)
	if err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Errorf("Wait = %v, want a guest panic error; serial log tail:\n%s", err, serialTail(vm))
	}
	if s := vm.State(); s != vmhost.StateError {
		t.Errorf("state = %q, want error", s)
	}
}

// TestForceStopAndKill: ForceStop brings a running VM down, stop mode kill
// SIGKILLs one, and so does an auto stop whose context has run out; all are
// requested stops, so Wait is nil.
func TestForceStopAndKill(t *testing.T) {
	img := miniImage(t)
	vmSlot(t)
	ctx, cancel := context.WithTimeout(context.Background(), stopDeadline)
	defer cancel()

	vm := startVM(t, vmOptions(t, img, "qtest-force", ""))
	waitSerial(t, vm, img.readyLine())
	res, err := vm.ForceStopResult(ctx)
	if err != nil {
		t.Fatalf("ForceStop: %v", err)
	}
	if res.StoppedBy != vmhost.ModeQuit && res.StoppedBy != vmhost.ModeKill {
		t.Errorf("ForceStop stopped_by = %q, want quit or kill", res.StoppedBy)
	}
	if err := vm.Wait(); err != nil || vm.State() != vmhost.StateStopped || !processGone(vm.PID()) {
		t.Errorf("after ForceStop: Wait %v, state %s, pid %d gone %v", err, vm.State(), vm.PID(), processGone(vm.PID()))
	}

	vm2 := startVM(t, vmOptions(t, img, "qtest-kill", ""))
	res, err = vm2.StopMode(ctx, stopDeadline, vmhost.ModeKill)
	if err != nil || res.StoppedBy != vmhost.ModeKill {
		t.Fatalf("StopMode kill = %+v, %v; want kill", res, err)
	}
	if err := vm2.Wait(); err != nil || vm2.State() != vmhost.StateStopped {
		t.Errorf("after stop mode kill: Wait %v (want nil: it was asked for), state %s", err, vm2.State())
	}
	if st := vm2.cmd.ProcessState; st == nil || st.ExitCode() != -1 {
		t.Errorf("qemu process state %v, want killed by a signal", st)
	}

	// A stop whose context has already run out still leaves no VM
	// behind: the graceful phases are skipped, SIGKILL is not.
	vm3 := startVM(t, vmOptions(t, img, "qtest-late", ""))
	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	res, err = vm3.StopMode(done, stopDeadline, vmhost.ModeAuto)
	if err != nil || res.StoppedBy != vmhost.ModeKill {
		t.Fatalf("auto stop with a cancelled context = %+v, %v; want kill", res, err)
	}
	if err := vm3.Wait(); err != nil || !processGone(vm3.PID()) {
		t.Errorf("after a late stop: Wait %v, pid %d gone %v", err, vm3.PID(), processGone(vm3.PID()))
	}
}

// TestFailedPhaseLeavesVMRunning: a guest booted without ACPI ignores the
// power button, so stop mode acpi fails after its timeout and leaves the VM
// running; stop mode quit then brings it down cleanly.
func TestFailedPhaseLeavesVMRunning(t *testing.T) {
	img := miniImage(t)
	vmSlot(t)
	vm := startVM(t, vmOptions(t, img, "qtest-noacpi", "acpi=off"))
	waitSerial(t, vm, img.readyLine())
	ctx, cancel := context.WithTimeout(context.Background(), stopDeadline)
	defer cancel()
	_, err := vm.StopMode(ctx, 3*time.Second, vmhost.ModeACPI)
	if err == nil || !strings.Contains(err.Error(), "did not go down") {
		t.Fatalf("StopMode acpi on a guest without ACPI: err = %v, want a timeout", err)
	}
	if s := vm.State(); s != vmhost.StateRunning || processGone(vm.PID()) {
		t.Fatalf("after a failed acpi stop: state %q, pid %d gone %v; want it running", s, vm.PID(), processGone(vm.PID()))
	}
	res, err := vm.StopMode(ctx, stopDeadline, vmhost.ModeQuit)
	if err != nil || res.StoppedBy != vmhost.ModeQuit {
		t.Fatalf("StopMode quit = %+v, %v", res, err)
	}
	if err := vm.Wait(); err != nil {
		t.Errorf("Wait after quit = %v, want nil", err)
	}
}

// TestQEMUKilledIsACrash: QEMU killed by someone else is a crash, not a
// clean stop.
func TestQEMUKilledIsACrash(t *testing.T) {
	img := miniImage(t)
	vmSlot(t)
	vm := startVM(t, vmOptions(t, img, "qtest-crash", ""))
	if err := syscallKill(vm.PID()); err != nil {
		t.Fatal(err)
	}
	err := waitExit(t, vm)
	if err == nil || !strings.Contains(err.Error(), "killed by signal") {
		t.Errorf("Wait = %v, want a crash naming the signal", err)
	}
	if s := vm.State(); s != vmhost.StateError {
		t.Errorf("state = %q, want error", s)
	}
}

// TestStopModeAgentWithoutAgent: mode agent on a VM without an agent
// channel is a clear error, and nothing is stopped.
func TestStopModeAgentWithoutAgent(t *testing.T) {
	c := &Controller{exited: make(chan struct{})}
	_, err := c.StopMode(context.Background(), time.Second, vmhost.ModeAgent)
	if err == nil || !strings.Contains(err.Error(), "no guest agent") || !strings.Contains(err.Error(), "acpi") {
		t.Errorf("StopMode agent without agent: err = %v, want one naming the other modes", err)
	}
}

// nonLoopbackIP returns one of the host's IPv4 addresses other than
// loopback, or "" when it has none.
func nonLoopbackIP() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	return ""
}

func serialTail(c *Controller) string {
	data, _ := os.ReadFile(c.cfg.path(serialLogName))
	return tail(data, 3000)
}

// TestStartErrors checks the errors a user can hit before anything boots.
func TestStartErrors(t *testing.T) {
	dir := vmDir(t)
	kernel := dir + "/vmlinuz"
	if err := os.WriteFile(kernel, []byte("not really a kernel"), 0o600); err != nil {
		t.Fatal(err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port

	tests := []struct {
		name   string
		modify func(o *Options)
		want   []string
	}{
		{"missing kernel file", func(o *Options) { o.Spec.Kernel = dir + "/no-such-vmlinuz" }, []string{"kernel file", dir + "/no-such-vmlinuz", "does not exist"}},
		{"missing initrd file", func(o *Options) { o.Spec.Initrd = dir + "/no-initrd" }, []string{"initrd file", dir + "/no-initrd"}},
		{"bad memory size", func(o *Options) { o.Spec.Memory = 1 << 20 }, []string{"memory 1M", "at least 32M"}},
		{"missing qemu binary", func(o *Options) { o.QEMUBinary = "qemu-system-mb-missing" }, []string{"qemu-system-mb-missing not found", "install"}},
		{"missing image", func(o *Options) { o.Spec.Kernel = ""; o.Spec.Image = "no-such-image" }, []string{`image "no-such-image" not found`}},
		{"explicit SSH port taken", func(o *Options) { o.Spec.SSHPort = takenPort }, []string{"ssh_port " + strconv.Itoa(takenPort), "already in use"}},
		{"bad name", func(o *Options) { o.Spec.Name = "Bad_Name" }, []string{"invalid VM name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Options{
				Dir:    vmDir(t),
				Home:   dir,
				Logger: testLogger(t),
				Spec:   &spec.Spec{Name: "errs", Kernel: kernel},
			}
			tt.modify(&o)
			c, err := Start(context.Background(), o)
			if err == nil {
				c.ForceStop(context.Background())
				t.Fatalf("Start succeeded, want an error containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			entries, _ := os.ReadDir(o.Dir)
			if slices.ContainsFunc(entries, func(e os.DirEntry) bool { return e.Name() == qmpSockName }) {
				t.Errorf("QEMU was started (qmp.sock exists) although Start failed early")
			}
		})
	}
}

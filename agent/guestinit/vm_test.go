//go:build linux

package guestinit

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestVMPowerButton boots the mini image, waits for the ready line, presses
// the ACPI power button through QMP and expects a clean power off: QEMU
// exits 0 by itself and the console shows guestinit's shutdown line.
func TestVMPowerButton(t *testing.T) {
	m := miniImage(t)
	vm := bootMini(t, m, "mb.hostname=pwrbtn")
	took := vm.waitSerial(t, ReadyLine)
	t.Logf("ready line %s after qemu started (tcg)", took.Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	q, err := dialQMP(ctx, vm.qmp)
	if err != nil {
		t.Fatal(err)
	}
	defer q.close()
	// The button device is watched from the ready line on; a press that
	// lands before that is repeated until the guest reacts.
	want := ShutdownLine(PowerOff, "acpi button")
	for i := 0; !strings.Contains(vm.serialLog(), want); i++ {
		if err := q.execute(ctx, "system_powerdown"); err != nil {
			// QEMU may already be gone: the guest powered off.
			if isClosed(vm.exited) {
				break
			}
			t.Fatalf("system_powerdown: %v", err)
		}
		if i > 0 {
			t.Logf("power button press %d", i+1)
		}
		select {
		case <-vm.exited:
		case <-time.After(5 * time.Second):
		case <-ctx.Done():
			t.Fatalf("the guest did not react to the power button within 60 s; console:\n%s", tail(vm.serialLog()))
		}
		if isClosed(vm.exited) {
			break
		}
	}
	if err := vm.waitExit(t); err != nil {
		t.Fatalf("qemu did not exit cleanly after the power button: %v; console:\n%s", err, tail(vm.serialLog()))
	}
	log := vm.serialLog()
	if !strings.Contains(log, want) {
		t.Errorf("console lacks %q:\n%s", want, tail(log))
	}
	if n := strings.Count(log, ReadyLine); n != 1 {
		t.Errorf("ready line printed %d times, want once:\n%s", n, tail(log))
	}
}

// TestVMSelftestPoweroff boots with mb.selftest=poweroff: the guest powers
// itself off right after the ready line. It also checks the init summary
// line: hostname from the command line, every module loaded, eth0 up.
func TestVMSelftestPoweroff(t *testing.T) {
	m := miniImage(t)
	vm := bootMini(t, m, "mb.selftest=poweroff mb.hostname=selftest-host")
	vm.waitSerial(t, ReadyLine)
	if err := vm.waitExit(t); err != nil {
		t.Fatalf("qemu did not exit cleanly after the guest powered off: %v; console:\n%s", err, tail(vm.serialLog()))
	}
	log := vm.serialLog()
	for _, want := range []string{
		ShutdownLine(PowerOff, "selftest"),
		"hostname=selftest-host",
		"iface=eth0",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("console lacks %q:\n%s", want, tail(log))
		}
	}
	for _, bad := range []string{"module did not load", "level=ERROR", "net=static"} {
		if strings.Contains(log, bad) {
			t.Errorf("console has %q:\n%s", bad, tail(log))
		}
	}
}

// TestVMSelftestPanic boots with mb.selftest=panic and expects the kernel
// to panic after the ready line, which QEMU reports as GUEST_PANICKED
// through pvpanic.
func TestVMSelftestPanic(t *testing.T) {
	m := miniImage(t)
	// Keep the panicked guest paused rather than rebooting it.
	vm := bootMini(t, m, "mb.selftest=panic", "-no-reboot", "-action", "panic=pause")
	ctx, cancel := context.WithTimeout(context.Background(), bootDeadline)
	defer cancel()
	q, err := dialQMP(ctx, vm.qmp)
	if err != nil {
		t.Fatal(err)
	}
	defer q.close()
	if err := q.execute(ctx, "query-status"); err != nil {
		t.Fatal(err)
	}
	if err := q.waitEvent(ctx, "GUEST_PANICKED"); err != nil {
		t.Fatalf("no GUEST_PANICKED event: %v; console:\n%s", err, tail(vm.serialLog()))
	}
	log := vm.serialLog()
	if !strings.Contains(log, ReadyLine) {
		t.Errorf("the guest panicked before the ready line:\n%s", tail(log))
	}
	if !strings.Contains(log, "Kernel panic") {
		t.Errorf("console lacks the kernel's panic message:\n%s", tail(log))
	}
}

// TestVMAgentChild checks the PID 1 / agent split through the agent
// channel: a guest command's exit status reaches the agent (PID 1's reaper
// does not steal it), orphans are reaped, a killed agent is restarted and
// answers again, and /sbin/reboot in the guest asks PID 1 for a clean
// reboot (SIGINT) that also ends a process ignoring SIGTERM, which QEMU's
// -no-reboot turns into an exit 0.
func TestVMAgentChild(t *testing.T) {
	m := miniImage(t)
	vm := bootMini(t, m, "", "-no-reboot")
	vm.waitSerial(t, ReadyLine)
	ctx, cancel := context.WithTimeout(context.Background(), bootDeadline)
	defer cancel()

	q, err := dialQGA(ctx, vm.agentSock)
	if err != nil {
		t.Fatal(err)
	}
	defer q.close()
	if err := q.sync(ctx); err != nil {
		t.Fatalf("agent did not answer: %v; console:\n%s", err, tail(vm.serialLog()))
	}
	t.Logf("agent answered %s after qemu started", time.Since(vm.started).Round(time.Millisecond))
	st, err := q.run(ctx, "/bin/sh", "-c", "echo $PPID; exit 7")
	if err != nil {
		t.Fatal(err)
	}
	if st.ExitCode == nil || *st.ExitCode != 7 {
		t.Fatalf("exit status of `exit 7` = %v (signal %v), want 7", st.ExitCode, st.Signal)
	}

	// Orphans (the subshells exit at once, so each sleep's parent becomes
	// PID 1) must not stay zombies.
	st, err = q.run(ctx, "/bin/sh", "-c",
		`for i in 1 2 3 4; do (sleep 0.1 &); done; sleep 2; grep -l '^State:.*Z' /proc/[0-9]*/status | wc -l`)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(st.OutData)); got != "0" {
		t.Errorf("%s zombie processes 2 s after orphans exited, want 0", got)
	}

	// Kill the agent (the shell's parent) and expect PID 1 to restart it.
	if err := q.send("guest-exec", map[string]any{"path": "/bin/sh", "arg": []string{"-c", "kill -9 $PPID"}}); err != nil {
		t.Fatal(err)
	}
	vm.waitSerial(t, "agent exited; restarting it")
	q.close()
	q, err = dialQGA(ctx, vm.agentSock)
	if err != nil {
		t.Fatal(err)
	}
	defer q.close()
	if err := q.sync(ctx); err != nil {
		t.Fatalf("restarted agent did not answer: %v; console:\n%s", err, tail(vm.serialLog()))
	}
	t.Logf("restarted agent answered %s after qemu started", time.Since(vm.started).Round(time.Millisecond))
	st, err = q.run(ctx, "/bin/sh", "-c", "echo $PPID")
	if err != nil {
		t.Fatal(err)
	}
	if st.ExitCode == nil || *st.ExitCode != 0 {
		t.Fatalf("command after the restart: exit %v", st.ExitCode)
	}

	// A process that ignores SIGTERM: the shutdown kills it after its grace.
	st, err = q.run(ctx, "/bin/sh", "-c", `trap '' TERM; sleep 1000 </dev/null >/dev/null 2>&1 & echo started`)
	if err != nil || st.ExitCode == nil || *st.ExitCode != 0 {
		t.Fatalf("start a SIGTERM-proof process: %v, %+v", err, st)
	}
	if err := q.send("guest-exec", map[string]any{"path": "/sbin/reboot", "arg": []string{}}); err != nil {
		t.Fatal(err)
	}
	if err := vm.waitExit(t); err != nil {
		t.Fatalf("qemu did not exit cleanly after the guest rebooted: %v; console:\n%s", err, tail(vm.serialLog()))
	}
	for _, want := range []string{ShutdownLine(Reboot, "signal SIGINT"), "processes still running after SIGTERM, killing them"} {
		if !strings.Contains(vm.serialLog(), want) {
			t.Errorf("console lacks %q:\n%s", want, tail(vm.serialLog()))
		}
	}
}

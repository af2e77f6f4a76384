package qemu

import (
	"fmt"
	"os/exec"
	"runtime"
	"syscall"
)

// startProcess starts cmd so that it dies with SIGKILL when this process
// dies, and returns a channel that receives cmd.Wait's result.
//
// Pdeathsig fires when the thread that forked the child exits, not when
// the process does. So the fork happens on a goroutine locked to its OS
// thread, and that goroutine stays (locked) in cmd.Wait until QEMU is gone;
// the Go runtime can then never retire the thread under QEMU.
func startProcess(cmd *exec.Cmd) (<-chan error, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	// Its own process group: a Ctrl-C on vmhost's terminal is vmhost's to
	// handle, never a silent clean exit of QEMU.
	cmd.SysProcAttr.Setpgid = true

	started := make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		done <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	return done, nil
}

//go:build !linux

package qemu

import (
	"fmt"
	"os/exec"
	"syscall"
)

// startProcess starts cmd and returns a channel that receives cmd.Wait's
// result. Outside Linux there is no Pdeathsig: QEMU outlives a vmhost that
// is killed with SIGKILL (a clean vmhost exit still stops it).
func startProcess(cmd *exec.Cmd) (<-chan error, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return done, nil
}

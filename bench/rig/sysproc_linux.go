//go:build linux

package rig

import "syscall"

// ChildSysProcAttr returns the process attributes for a child that the rig
// (or a benchmark) starts: the child is killed if the process that started
// it dies (Pdeathsig), so a crashed benchmark leaves nothing behind.
func ChildSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

//go:build !linux

package rig

import "syscall"

// ChildSysProcAttr returns the process attributes for a child that the rig
// (or a benchmark) starts. Pdeathsig is Linux-only, so here the child does
// not die with the process that started it.
func ChildSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{}
}

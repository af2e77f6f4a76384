//go:build darwin && cgo

// Package vzbad misuses vz's API on purpose: darwincheck's test expects the
// error on the marked line.
package vzbad

import "github.com/Code-Hex/vz/v3"

// Config passes the CPU count as a string where vz wants a uint.
func Config(boot vz.BootLoader) (*vz.VirtualMachineConfiguration, error) {
	return vz.NewVirtualMachineConfiguration(boot, "2", 1<<30) // want: cannot use "2"
}

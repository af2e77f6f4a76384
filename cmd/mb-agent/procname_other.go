//go:build !linux

package main

// setProcName does nothing outside Linux.
func setProcName() {}

//go:build !darwin || !cgo

package applevirt

import (
	"errors"
	"runtime"
)

// platformErr says why this build cannot run VMs.
var platformErr = errNeedsMacOS()

func errNeedsMacOS() error {
	if runtime.GOOS == "darwin" {
		return errors.New("the applevirt backend needs vmhost built with cgo (CGO_ENABLED=1 and Xcode's command line tools: xcode-select --install), then signed with make sign")
	}
	return errors.New("the applevirt backend needs macOS with Apple's Virtualization framework (macOS 13 or later on a Mac): on " + runtime.GOOS + ", use backend: qemu")
}

// newMachine fails: see platformErr.
func newMachine(*Config) (machine, error) { return nil, platformErr }

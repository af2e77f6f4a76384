//go:build !linux

package qemu

import (
	"errors"
	"os"
)

// haveMemfd: outside Linux a cold boot's guest RAM is a sparse file.
const haveMemfd = false

// anonRAM has no memfd outside Linux: the guest RAM of a cold boot is
// then a sparse file in the VM directory, as a resumed VM's is.
func anonRAM(uint64) (*os.File, error) {
	return nil, errors.ErrUnsupported
}

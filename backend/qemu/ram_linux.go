package qemu

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// haveMemfd: a cold boot's guest RAM is a memfd (anonRAM).
const haveMemfd = true

// anonRAM makes the guest RAM of a cold boot: a memfd of mib MiB, held by
// vmhost and passed to QEMU, which maps it shared. It lives in memory only
// (no disk blocks to allocate or write back while the guest runs) and is
// freed when both processes have closed it, so a kill -9 leaks nothing.
// A suspend copies it into the VM directory.
func anonRAM(mib uint64) (*os.File, error) {
	fd, err := unix.MemfdCreate(ramMemfdName, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create the guest memory (memfd): %w", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:"+ramMemfdName)
	if err := f.Truncate(int64(mib) << 20); err != nil {
		f.Close()
		return nil, fmt.Errorf("size the guest memory (memfd): %w", err)
	}
	return f, nil
}

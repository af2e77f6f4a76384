package main

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// setProcName names the process mb-agent in ps, top and socktop: the agent
// child of the mini image's init is started through /proc/self/exe, which
// would otherwise make its name "exe".
func setProcName() {
	name := []byte("mb-agent\x00")
	unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0, 0, 0)
}

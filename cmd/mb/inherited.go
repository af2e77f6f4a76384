package main

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// keepInheritedFromChildren marks every descriptor above stderr close-on-
// exec, so that the daemon this command starts gets only the ones it is
// given. Go closes its own descriptors on exec, but not those mb itself
// inherited: a lock that `flock FILE mb ...` holds, or a pipe a CI runner
// passed down, would live on in the daemon, holding the lock for good or
// keeping the runner waiting for the pipe's end.
func keepInheritedFromChildren() {
	ents, err := os.ReadDir("/dev/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		unix.CloseOnExec(fd)
	}
}

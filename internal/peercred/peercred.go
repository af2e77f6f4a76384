// Package peercred checks who is at the other end of a unix socket: the
// kernel's record of the peer's uid (SO_PEERCRED on Linux, LOCAL_PEERCRED
// on macOS). mb's sockets serve only their owner's uid.
package peercred

import (
	"fmt"
	"net"
	"os"
)

// Check decides whether a peer may talk to a socket owned by ownUID: only
// the same uid. Root is not special: a root-owned socket serves root only.
func Check(peerUID, ownUID int) error {
	if peerUID != ownUID {
		return fmt.Errorf("permission denied: peer uid %d is not uid %d, which owns this socket", peerUID, ownUID)
	}
	return nil
}

// UID returns the uid of the process at the other end of c, as the kernel
// recorded it (SO_PEERCRED on Linux, LOCAL_PEERCRED on macOS).
func UID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	uid, serr := -1, error(nil)
	if err := raw.Control(func(fd uintptr) { uid, serr = peerUID(int(fd)) }); err != nil {
		return -1, err
	}
	return uid, serr
}

// Verify reads the peer's uid from the kernel and applies Check against
// this process's uid.
func Verify(c *net.UnixConn) error {
	uid, err := UID(c)
	if err != nil {
		return fmt.Errorf("read peer credentials: %w", err)
	}
	return Check(uid, os.Getuid())
}

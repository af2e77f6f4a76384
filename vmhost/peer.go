package vmhost

import (
	"fmt"
	"net"
	"os"
)

// checkPeer decides whether a peer may talk to this process: only the same
// uid (root is not special: a root-owned vmhost serves root only).
func checkPeer(peerUID, ownUID int) error {
	if peerUID != ownUID {
		return fmt.Errorf("permission denied: peer uid %d is not the owner uid %d of this socket", peerUID, ownUID)
	}
	return nil
}

// checkPeerConn reads the peer's credentials from the kernel and applies
// checkPeer.
func checkPeerConn(c *net.UnixConn) error {
	uid, err := peerUID(c)
	if err != nil {
		return fmt.Errorf("read peer credentials: %w", err)
	}
	return checkPeer(uid, os.Getuid())
}

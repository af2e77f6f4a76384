//go:build !linux

package vsockrelay

import (
	"errors"
	"net"
)

// HostCID is the CID of the host, where vmhost connects from.
const HostCID = 2

// ListenVsock fails: the relay runs in Linux guests only.
func ListenVsock(port int, peerCID uint32) (net.Listener, error) {
	return nil, errors.New("the vsock relay needs a Linux guest")
}

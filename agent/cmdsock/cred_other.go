//go:build !linux

package cmdsock

import (
	"errors"
	"net"
)

// peerOf is only implemented on Linux, where mb-agent runs.
func peerOf(c *net.UnixConn) (Peer, error) {
	return Peer{}, errors.New("peer credentials are only read on Linux")
}

func supplementaryGroups(pid int) ([]int, error) {
	return nil, errors.New("supplementary groups are only read on Linux")
}

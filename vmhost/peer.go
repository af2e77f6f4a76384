package vmhost

import (
	"net"

	"github.com/mbvm/mb/internal/peercred"
)

// checkPeerConn refuses a peer whose uid is not this process's.
func checkPeerConn(c *net.UnixConn) error { return peercred.Verify(c) }

package daemon

import (
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/mbvm/mb/peercred"
)

// peerAllowed decides whether a client may use the daemon: only a process
// of the daemon's own uid. Root is not special: a root daemon serves root.
func peerAllowed(peerUID, ownUID int) error {
	if peerUID != ownUID {
		return fmt.Errorf("permission denied: peer uid %d is not uid %d, which owns this mb daemon", peerUID, ownUID)
	}
	return nil
}

// peerListener accepts only connections from the daemon's own uid and
// closes the others (SO_PEERCRED on Linux, LOCAL_PEERCRED on macOS).
type peerListener struct {
	net.Listener
	log *slog.Logger
}

// Accept returns the next connection from an allowed peer.
func (l *peerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		uc, ok := c.(*net.UnixConn)
		if !ok {
			return c, nil
		}
		uid, err := peercred.UID(uc)
		if err == nil {
			err = peerAllowed(uid, os.Getuid())
		}
		if err != nil {
			l.log.Warn("refused a connection", "err", err)
			c.Close()
			continue
		}
		return c, nil
	}
}

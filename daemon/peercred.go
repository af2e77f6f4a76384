package daemon

import (
	"log/slog"
	"net"

	"github.com/mbvm/mb/internal/peercred"
)

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
		if err := peercred.Verify(uc); err != nil {
			l.log.Warn("refused a connection", "err", err)
			c.Close()
			continue
		}
		return c, nil
	}
}

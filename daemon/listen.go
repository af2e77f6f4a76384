package daemon

import (
	"net"

	"github.com/mbvm/mb/internal/sockfile"
)

// listenSocket binds the API socket 0600 without a moment of the umask's
// looser mode (see internal/sockfile); Run removes it under its final name.
func listenSocket(path string) (*net.UnixListener, error) {
	return sockfile.Listen(path, 0o600)
}

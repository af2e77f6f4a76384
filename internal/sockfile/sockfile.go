// Package sockfile binds unix sockets that are never reachable with a
// looser mode than asked: the socket is bound under a temporary name,
// chmodded, and only then renamed to its path. Binding in place would leave
// it open with the umask's mode for a moment.
package sockfile

import (
	"fmt"
	"net"
	"os"
)

// Listen binds a unix socket at path with the given mode. A stale socket
// at path is replaced. The listener does not remove the socket when it is
// closed: the caller removes it under its final name.
func Listen(path string, mode os.FileMode) (*net.UnixListener, error) {
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	_ = os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, mode); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("chmod socket %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("move socket into place at %s: %w", path, err)
	}
	return ln, nil
}

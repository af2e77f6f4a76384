package daemon

import (
	"fmt"
	"net"
	"os"
)

// listenSocket binds the API socket under a temporary name, restricts it to
// 0600 and renames it into place, so that path never names a socket with
// the umask's looser mode. A stale socket at path is replaced.
func listenSocket(path string) (*net.UnixListener, error) {
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	_ = os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// The file is removed by Run under its final name.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
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

package daemon

import (
	"fmt"
	"path/filepath"

	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/vmhost"
)

// MaxSocketPath is the longest unix socket path mb accepts, in bytes. The
// kernel's sun_path is 104 bytes on macOS (108 on Linux) including the
// terminating NUL, so 103 fits everywhere.
const MaxSocketPath = 103

// vmSocketNames are the sockets a VM directory holds.
var vmSocketNames = []string{vmhost.SocketName, "qmp.sock", "agent.sock", "console.sock"}

// checkVMSocketPaths refuses a VM whose longest socket path would not fit
// in a unix socket address, saying how long a name may be.
func checkVMSocketPaths(mbHome, name string) error {
	p := filepath.Join(layout.VMDir(mbHome, name), vmhost.LongestSocketName)
	if len(p) <= MaxSocketPath {
		return nil
	}
	room := MaxSocketPath - (len(p) - len(name))
	if room < 1 {
		return fmt.Errorf("socket path %s is %d bytes, over the %d-byte limit of unix sockets, and MB_HOME=%s leaves no room for any VM name: use a shorter MB_HOME (at most %d bytes)",
			p, len(p), MaxSocketPath, mbHome, len(mbHome)-(1-room))
	}
	return fmt.Errorf("socket path %s is %d bytes, over the %d-byte limit of unix sockets: with MB_HOME=%s a VM name may have at most %d characters (or use a shorter MB_HOME)",
		p, len(p), MaxSocketPath, mbHome, room)
}

// checkSocketPath refuses a socket path that does not fit.
func checkSocketPath(p string) error {
	if len(p) > MaxSocketPath {
		return fmt.Errorf("socket path %s is %d bytes, over the %d-byte limit of unix sockets: use a shorter MB_HOME", p, len(p), MaxSocketPath)
	}
	return nil
}

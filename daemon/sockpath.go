package daemon

import (
	"github.com/mbvm/mb/internal/layout"
)

// MaxSocketPath is the longest unix socket path mb accepts, in bytes (see
// layout.MaxSocketPath).
const MaxSocketPath = layout.MaxSocketPath

// checkVMSocketPaths refuses a VM whose longest socket path (vmhost's or
// its backend's, as internal/layout declares them) would not fit in a unix
// socket address, saying how long a name may be.
func checkVMSocketPaths(mbHome, name, backend string) error {
	return layout.CheckVMSocketPaths(mbHome, name, backend)
}

// checkSocketPath refuses a socket path that does not fit.
func checkSocketPath(p string) error { return layout.CheckSocketPath(p) }

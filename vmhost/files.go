package vmhost

import "github.com/mbvm/mb/internal/layout"

// Files vmhost keeps in a VM directory; internal/layout owns the names.
const (
	// SocketName is the control socket.
	SocketName = layout.VMHostSocket
	// PIDName holds vmhost's PID while it serves.
	PIDName = layout.VMHostPID
	// LockName is held (flock) for vmhost's whole life; only the lock says
	// whether a vmhost runs, never the PID file or the socket.
	LockName = layout.VMHostLock
	// LongestSocketName is the longest name vmhost binds in the directory:
	// the socket's temporary name before it is renamed into place.
	LongestSocketName = layout.VMHostSocketTemp
)

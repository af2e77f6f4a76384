package vmhost

// Files vmhost keeps in a VM directory.
const (
	// SocketName is the control socket.
	SocketName = "vmhost.sock"
	// PIDName holds vmhost's PID while it serves.
	PIDName = "vmhost.pid"
	// LockName is held (flock) for vmhost's whole life; only the lock says
	// whether a vmhost runs, never the PID file or the socket.
	LockName = "vmhost.lock"
	// LongestSocketName is the longest name vmhost binds in the directory:
	// the socket's temporary name before it is renamed into place (a Linux
	// PID has at most 7 digits).
	LongestSocketName = SocketName + ".4194304.tmp"
)

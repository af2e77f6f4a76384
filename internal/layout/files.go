package layout

import (
	"fmt"
	"path/filepath"
	"slices"
)

// Files vmhost keeps in every VM directory, whatever the backend.
const (
	// VMHostSocket is vmhost's control socket.
	VMHostSocket = "vmhost.sock"
	// VMHostPID holds vmhost's PID while it serves.
	VMHostPID = "vmhost.pid"
	// VMHostLock is held (flock) for vmhost's whole life; only the lock says
	// whether a vmhost runs, never the PID file or the socket.
	VMHostLock = "vmhost.lock"
	// VMHostLog receives vmhost's stdout and stderr.
	VMHostLog = "vmhost.log"
	// ExitRecord is written by vmhost just before it exits.
	ExitRecord = "exit.json"
	// VMHostSocketTemp is the longest name vmhost binds in the directory:
	// the socket's temporary name before it is renamed into place (a Linux
	// PID has at most 7 digits).
	VMHostSocketTemp = VMHostSocket + ".4194304.tmp"
)

// Files the backends make in a VM directory (qemu all of them; applevirt
// the agent socket and the serial log).
const (
	// QEMUPID is written by QEMU (-pidfile) and left behind when QEMU
	// outlives its vmhost, so the next start can find it.
	QEMUPID = "qemu.pid"
	// QMPSocket is QEMU's monitor (QMP).
	QMPSocket = "qmp.sock"
	// ConsoleSocket is the guest's serial console.
	ConsoleSocket = "console.sock"
	// AgentSocket is the host end of the guest agent's virtio-serial port.
	AgentSocket = "agent.sock"
	// SerialLog is everything the guest wrote on its serial console.
	SerialLog = "serial.log"
	// SSHPortState is the SSH port the backend chose itself last time
	// (the VM's state, not its spec), reused at the next start when free.
	SSHPortState = "ssh_port"
)

// Keys of the paths vmhost reports in the info reply's "paths", so that
// clients never build a backend's file names themselves.
const (
	PathVMHostSocket = "vmhost_socket"
	PathConsole      = "console"
	PathSerialLog    = "serial_log"
	PathAgent        = "agent"
	PathQMP          = "qmp"
)

// BackendFiles are the files a backend makes in a VM directory.
type BackendFiles struct {
	// Sockets are the unix sockets the backend binds there: their paths
	// must fit a socket address, and they are stale once vmhost is gone.
	Sockets []string
	// Console is the serial console socket, "" when the backend has none.
	Console string
	// SerialLog is the console log, "" when the backend keeps none.
	SerialLog string
}

// backendFiles is every backend's declaration. The fake backend makes no
// files of its own; applevirt serves the agent socket (relayed to vsock)
// and keeps a serial log, but has no console socket.
var backendFiles = map[string]BackendFiles{
	"qemu": {
		Sockets:   []string{QMPSocket, ConsoleSocket, AgentSocket},
		Console:   ConsoleSocket,
		SerialLog: SerialLog,
	},
	"fake": {},
	"applevirt": {
		Sockets:   []string{AgentSocket},
		SerialLog: SerialLog,
	},
}

// Backend returns the files the named backend makes in a VM directory; an
// unknown backend makes none.
func Backend(name string) BackendFiles {
	f := backendFiles[name]
	f.Sockets = slices.Clone(f.Sockets)
	return f
}

// StaleFiles lists the names that describe a live run only: vmhost's PID
// file and every socket vmhost and the named backend bind. Once the vmhost
// lock is free they are left-overs and may be removed. An empty backend
// means every backend's, for a directory whose last run is unknown.
func StaleFiles(backend string) []string {
	out := []string{VMHostPID, VMHostSocket}
	add := func(f BackendFiles) {
		for _, s := range f.Sockets {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	if backend != "" {
		add(backendFiles[backend])
		return out
	}
	names := make([]string, 0, len(backendFiles))
	for n := range backendFiles {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		add(backendFiles[n])
	}
	return out
}

// MaxSocketPath is the longest unix socket path mb accepts, in bytes. The
// kernel's sun_path is 104 bytes on macOS (108 on Linux) including the
// terminating NUL, so 103 fits everywhere.
const MaxSocketPath = 103

// longestSocket is the longest socket name vmhost or the backend binds in a
// VM directory.
func longestSocket(backend string) string {
	longest := VMHostSocketTemp
	for _, s := range backendFiles[backend].Sockets {
		if len(s) > len(longest) {
			longest = s
		}
	}
	return longest
}

// CheckVMSocketPaths refuses a VM whose longest socket path (vmhost's or
// the backend's) would not fit in a unix socket address, saying how long a
// name may be.
func CheckVMSocketPaths(home, name, backend string) error {
	p := filepath.Join(VMDir(home, name), longestSocket(backend))
	if len(p) <= MaxSocketPath {
		return nil
	}
	room := MaxSocketPath - (len(p) - len(name))
	if room < 1 {
		return fmt.Errorf("socket path %s is %d bytes, over the %d-byte limit of unix sockets, and MB_HOME=%s leaves no room for any VM name: use a shorter MB_HOME (at most %d bytes)",
			p, len(p), MaxSocketPath, home, len(home)-(1-room))
	}
	return fmt.Errorf("socket path %s is %d bytes, over the %d-byte limit of unix sockets: with MB_HOME=%s a VM name may have at most %d characters (or use a shorter MB_HOME)",
		p, len(p), MaxSocketPath, home, room)
}

// CheckSocketPath refuses a socket path that does not fit.
func CheckSocketPath(p string) error {
	if len(p) > MaxSocketPath {
		return fmt.Errorf("socket path %s is %d bytes, over the %d-byte limit of unix sockets: use a shorter MB_HOME", p, len(p), MaxSocketPath)
	}
	return nil
}

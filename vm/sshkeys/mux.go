package sshkeys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// MuxPersist is how long the VM's shared SSH connection (an OpenSSH
// ControlMaster) stays after its last session: `mb ssh` calls within it
// open a session on it instead of a new connection, which under emulation
// costs the guest about a second each (key exchange, authentication).
const MuxPersist = 60 * time.Second

// maxSocketPath keeps the control socket's path under the unix socket
// limit (108 bytes on Linux, 104 on macOS), with room for the suffix
// OpenSSH adds to the temporary name it binds first.
const maxSocketPath = 80

// MuxPath is the control socket of the shared connection for t's user,
// port and run of the VM, in the VM directory (0700, so only its owner reaches it), or
// "" when the path is too long for a unix socket (then no sharing).
func (t Target) MuxPath() string {
	name := "ssh-" + t.user() + "-" + strconv.Itoa(t.Port)
	if t.Boot != "" {
		name += "-" + t.Boot
	}
	p := filepath.Join(t.Dir, name+".mux")
	if len(p) > maxSocketPath {
		return ""
	}
	return p
}

// MuxAlive reports whether a shared connection answers on t's control
// socket. A socket nobody answers on (its ssh was killed) is removed, so
// that a new master can bind it.
func (t Target) MuxAlive() bool {
	p := t.MuxPath()
	if p == "" {
		return false
	}
	c, err := net.DialTimeout("unix", p, time.Second)
	if err == nil {
		c.Close()
		return true
	}
	if st, err := os.Lstat(p); err == nil && st.Mode()&os.ModeSocket != 0 {
		_ = os.Remove(p)
	}
	return false
}

// muxOptions are the -o options that make ssh use (ControlMaster=no:
// use it when it is there, else connect directly) or be the shared
// connection.
func (t Target) muxOptions(master string) []string {
	return []string{"-o", "ControlMaster=" + master, "-o", "ControlPath=" + t.MuxPath(),
		"-o", "ControlPersist=" + strconv.Itoa(int(MuxPersist/time.Second)),
		// A master on a guest that hangs is given up within 15 s.
		"-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"}
}

// MuxArgv is Argv riding on the shared connection when there is one.
func MuxArgv(t Target, cmd []string) []string {
	argv := Argv(t, cmd)
	if t.MuxPath() == "" {
		return argv
	}
	return append(append([]string{argv[0]}, t.muxOptions("no")...), argv[1:]...)
}

// StartMux has the system ssh (bin) connect to the VM, authenticate, and
// stay in the background as the shared connection: it is the readiness
// check of `mb ssh` and its connection at once. It returns ssh's own
// words when it fails.
func StartMux(ctx context.Context, bin string, t Target) error {
	if t.MuxPath() == "" {
		return errors.New("the VM directory's path is too long for an SSH control socket")
	}
	argv := Argv(t, nil)
	// -f -N: into the background once authenticated, with no session.
	args := append(t.muxOptions("yes"), "-f", "-N", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10")
	args = append(args, argv[1:]...)
	c := exec.CommandContext(ctx, bin, args...)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	if err := c.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("ssh: %s", msg)
	}
	return nil
}

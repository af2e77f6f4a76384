package cmdsock

import (
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"
)

// lookupGroup resolves a group name or numeric gid; "" is gid 0.
func lookupGroup(group string) (int, error) {
	if group == "" {
		return 0, nil
	}
	if gid, err := strconv.Atoi(group); err == nil && gid >= 0 {
		return gid, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return -1, fmt.Errorf("command socket group %q: %w (give an existing group name or a numeric gid)", group, err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return -1, fmt.Errorf("command socket group %q: gid %q is not a number", group, g.Gid)
	}
	return gid, nil
}

// listen creates the socket at path with mode 0770 and group gid, with no
// moment at which it is reachable with a looser mode: it binds under a
// fresh 0700 directory next to path, sets mode and owner there, and renames
// it into place. A stale socket at path is replaced; a live one is an
// error.
func listen(path string, gid int) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if err := ensureDir(dir, gid); err != nil {
		return nil, err
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("command socket %s: another process is serving it (stop it, or pick another path with --command-socket)", path)
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket == 0 {
		return nil, fmt.Errorf("command socket %s: the path exists and is not a socket (remove it or pick another path)", path)
	}
	tmp, err := os.MkdirTemp(dir, ".cmdsock-")
	if err != nil {
		return nil, fmt.Errorf("command socket: %w", err)
	}
	defer os.RemoveAll(tmp)
	tpath := filepath.Join(tmp, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tpath, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("command socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*net.UnixListener, error) {
		ln.Close()
		return nil, fmt.Errorf("command socket %s: %w", path, err)
	}
	if err := os.Chmod(tpath, 0o770); err != nil {
		return fail(err)
	}
	if err := os.Lchown(tpath, os.Getuid(), gid); err != nil {
		return fail(fmt.Errorf("%w (only root can give the socket to another group)", err))
	}
	if err := os.Rename(tpath, path); err != nil {
		return fail(err)
	}
	return ln, nil
}

// ensureDir makes sure dir is a real directory (not a symlink); one it has
// to create gets mode 0750 and group gid, so the group can reach the socket
// and nobody else can list it.
func ensureDir(dir string, gid int) error {
	fi, err := os.Lstat(dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("command socket directory %s is not a directory (a symlink or a file is refused)", dir)
		}
		return nil
	}
	if !os.IsNotExist(err) {
		return fmt.Errorf("command socket directory: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("command socket directory: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !os.IsExist(err) {
		return fmt.Errorf("command socket directory: %w", err)
	}
	if err := os.Lchown(dir, os.Getuid(), gid); err != nil {
		return fmt.Errorf("command socket directory %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o750); err != nil {
		return fmt.Errorf("command socket directory: %w", err)
	}
	return nil
}

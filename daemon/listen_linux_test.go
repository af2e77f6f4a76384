package daemon

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/mbvm/mb/daemon/api"
)

// The daemon's socket appears at its name only by a rename, already 0600:
// it is never created there (where it would briefly have the umask's
// mode). Watched with inotify, so the check does not depend on timing.
func TestSocketNeverLooseMode(t *testing.T) {
	home, err := os.MkdirTemp("/tmp", "mbd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.InotifyAddWatch(fd, home, unix.IN_CREATE|unix.IN_MOVED_TO); err != nil {
		t.Fatal(err)
	}
	old := unix.Umask(0)
	td := startTestDaemon(t, home, nil)
	unix.Umask(old)

	var created, moved bool
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil || n <= 0 {
			break
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := string(bytes.TrimRight(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)], "\x00"))
			if name == api.SocketName {
				created = created || ev.Mask&unix.IN_CREATE != 0
				moved = moved || ev.Mask&unix.IN_MOVED_TO != 0
			}
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
	}
	if created || !moved {
		t.Errorf("%s: created in place %v, renamed into place %v; want only renamed", api.SocketName, created, moved)
	}
	st, err := os.Stat(filepath.Join(home, api.SocketName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", st.Mode().Perm())
	}
	td.stop()
}

//go:build linux

package agent

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/mbvm/mb/agent/qgaproto"
)

// openPty allocates a pseudo-terminal of the given size: the master
// (non-blocking, for the agent) and the slave (for the command).
func openPty(ws qgaproto.WinSize) (master, slave *os.File, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open /dev/ptmx (is devpts mounted on /dev/pts?): %w", err)
	}
	rc, err := m.SyscallConn()
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	var n int
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		if cerr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); cerr != nil {
			return
		}
		n, cerr = unix.IoctlGetInt(int(fd), unix.TIOCGPTN)
	}); err != nil || cerr != nil {
		m.Close()
		return nil, nil, fmt.Errorf("unlock the pseudo-terminal: %v", errorsJoin(err, cerr))
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("open the pseudo-terminal's slave: %w", err)
	}
	if err := setWinSize(m, ws); err != nil {
		m.Close()
		s.Close()
		return nil, nil, err
	}
	return m, s, nil
}

func errorsJoin(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// setWinSize sets the terminal size of a pseudo-terminal master; the
// kernel sends SIGWINCH to its foreground process group.
func setWinSize(m *os.File, ws qgaproto.WinSize) error {
	rc, err := m.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: ws.Rows, Col: ws.Cols})
	}); err != nil {
		return err
	}
	if ierr != nil {
		return fmt.Errorf("set the terminal size: %w", ierr)
	}
	return nil
}

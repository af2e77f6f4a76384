//go:build linux

package guestinit

import (
	"fmt"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"
)

// reopenConsole points the console (and stdin, stdout, stderr) at
// /dev/console when it can be opened.
func (in *initProc) reopenConsole() {
	if c, err := openConsole(); err == nil {
		in.console = c
		in.consoleOK = true
	}
}

// consoleWriter writes to whatever the console currently is.
type consoleWriter struct{ in *initProc }

func (w consoleWriter) Write(p []byte) (int, error) { return w.in.console.Write(p) }

// openConsole opens /dev/console and makes it stdin, stdout and stderr,
// whether or not the initramfs had a /dev/console node for the kernel.
func openConsole() (*os.File, error) {
	c, err := os.OpenFile("/dev/console", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("open console: %w", err)
	}
	for fd := 0; fd <= 2; fd++ {
		if err := unix.Dup3(int(c.Fd()), fd, 0); err != nil {
			return nil, fmt.Errorf("dup console to fd %d: %w", fd, err)
		}
	}
	return c, nil
}

// dropTime leaves the time out of init's log lines: they are few, and
// the guest clock says little at boot.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

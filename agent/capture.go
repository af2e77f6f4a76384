package agent

import (
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// capture collects up to MaxExecOutput bytes of one output stream.
type capture struct {
	buf       []byte
	truncated bool
}

func (c *capture) add(b []byte) {
	room := MaxExecOutput - len(c.buf)
	if len(b) > room {
		c.truncated = true
		b = b[:max(room, 0)]
	}
	c.buf = append(c.buf, b...)
}

func (c *capture) result() ([]byte, bool) {
	if c.buf == nil {
		return []byte{}, c.truncated
	}
	return c.buf, c.truncated
}

// readFrom reads f until EOF. When a deadline stops it, it clears the
// deadline and takes what is left in the pipe without waiting.
func (c *capture) readFrom(f *os.File) {
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		c.add(buf[:n])
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.drainNow(f, buf)
		}
		return
	}
}

func (c *capture) drainNow(f *os.File, buf []byte) {
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		return
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Read(func(fd uintptr) bool {
		for {
			n, err := unix.Read(int(fd), buf)
			if n <= 0 || err != nil {
				return true
			}
			c.add(buf[:n])
		}
	})
}

//go:build !linux

package fleet

import (
	"net"
	"time"
)

// enableTimestamps: kernel receive timestamps are read on Linux only; the
// receiver takes the time when the datagram is read.
func enableTimestamps(*net.UDPConn) bool { return false }

func setBuffers(c *net.UDPConn, size int) {
	_ = c.SetReadBuffer(size)
	_ = c.SetWriteBuffer(1 << 20)
}

func kernelTime([]byte) (time.Time, bool) { return time.Time{}, false }

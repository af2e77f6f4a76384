package fleet

import (
	"encoding/binary"
	"net"
	"syscall"
	"time"
	"unsafe"
)

// enableTimestamps asks the kernel for a receive timestamp with every
// datagram (SO_TIMESTAMPNS); it reports whether it could.
func enableTimestamps(c *net.UDPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	}); err != nil {
		return false
	}
	return serr == nil
}

// setBuffers sizes the socket's buffers: the ordinary way, then, when the
// kernel's cap left it smaller and the process may, past the cap.
func setBuffers(c *net.UDPConn, size int) {
	_ = c.SetReadBuffer(size)
	_ = c.SetWriteBuffer(1 << 20)
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		got, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
		if err == nil && got < size { // the kernel reports twice the size set
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, size)
		}
	})
}

// kernelTime finds the SCM_TIMESTAMPNS control message in oob.
func kernelTime(oob []byte) (time.Time, bool) {
	for len(oob) >= syscall.SizeofCmsghdr {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < syscall.SizeofCmsghdr || l > len(oob) {
			return time.Time{}, false
		}
		data := oob[syscall.SizeofCmsghdr:l]
		if h.Level == syscall.SOL_SOCKET && h.Type == syscall.SCM_TIMESTAMPNS {
			switch len(data) {
			case 16: // 64-bit time_t and long
				return time.Unix(int64(binary.NativeEndian.Uint64(data)), int64(binary.NativeEndian.Uint64(data[8:]))), true
			case 8: // 32-bit platforms
				return time.Unix(int64(int32(binary.NativeEndian.Uint32(data))), int64(binary.NativeEndian.Uint32(data[4:]))), true
			}
			return time.Time{}, false
		}
		const align = int(unsafe.Sizeof(uintptr(0)))
		next := (l + align - 1) &^ (align - 1)
		if next > len(oob) {
			break
		}
		oob = oob[next:]
	}
	return time.Time{}, false
}

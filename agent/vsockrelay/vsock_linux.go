//go:build linux

package vsockrelay

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// pollInterval is how often a blocked Accept rechecks whether the listener
// was closed.
const pollInterval = 200 * time.Millisecond

// Listener is a vsock stream listener. It accepts connections from the CID
// given to ListenVsock only; others are closed at once.
type Listener struct {
	fd      int
	port    uint32
	peerCID uint32

	mu     sync.Mutex
	closed bool
	// inUse is held by Accept while it polls and accepts on fd, so Close
	// never closes the descriptor under it (its number could be reused).
	inUse sync.Mutex
}

// HostCID is the CID of the host, where vmhost connects from.
const HostCID = unix.VMADDR_CID_HOST

// ListenVsock listens on a vsock port of this machine and accepts
// connections from peerCID only (HostCID in a guest).
func ListenVsock(port int, peerCID uint32) (*Listener, error) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("create vsock socket (is the vsock transport driver loaded?): %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: uint32(port)}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind vsock port %d (is another relay running?): %w", port, err)
	}
	if err := unix.Listen(fd, 16); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listen on vsock port %d: %w", port, err)
	}
	return &Listener{fd: fd, port: uint32(port), peerCID: peerCID}, nil
}

// Accept waits for the next connection from the peer CID.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, retry, err := l.acceptOnce()
		if retry {
			continue
		}
		return c, err
	}
}

// acceptOnce polls for at most pollInterval and accepts one connection;
// retry means nothing usable arrived yet.
func (l *Listener) acceptOnce() (c net.Conn, retry bool, err error) {
	l.inUse.Lock()
	defer l.inUse.Unlock()
	if l.isClosed() {
		return nil, false, net.ErrClosed
	}
	pfd := []unix.PollFd{{Fd: int32(l.fd), Events: unix.POLLIN}}
	n, err := unix.Poll(pfd, int(pollInterval/time.Millisecond))
	if err == unix.EINTR || (err == nil && n == 0) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("poll vsock port %d: %w", l.port, err)
	}
	if l.isClosed() {
		return nil, false, net.ErrClosed
	}
	nfd, sa, err := unix.Accept4(l.fd, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
	if err == unix.EAGAIN || err == unix.EINTR || err == unix.ECONNABORTED {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("accept on vsock port %d: %w", l.port, err)
	}
	vm, ok := sa.(*unix.SockaddrVM)
	if !ok || vm.CID != l.peerCID {
		unix.Close(nfd)
		return nil, true, nil
	}
	return newConn(nfd, l.Addr(), &Addr{CID: vm.CID, Port: vm.Port}), false, nil
}

func (l *Listener) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// Close stops the listener; a blocked Accept returns net.ErrClosed.
func (l *Listener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	// Shutting the socket down wakes an Accept polling it; the descriptor
	// is closed once Accept has let go of it.
	_ = unix.Shutdown(l.fd, unix.SHUT_RDWR)
	l.inUse.Lock()
	defer l.inUse.Unlock()
	return unix.Close(l.fd)
}

// Addr is the listener's address.
func (l *Listener) Addr() net.Addr { return &Addr{CID: unix.VMADDR_CID_ANY, Port: l.port} }

// Addr is a vsock address.
type Addr struct {
	CID, Port uint32
}

// Network returns "vsock".
func (a *Addr) Network() string { return "vsock" }
func (a *Addr) String() string {
	return strconv.FormatUint(uint64(a.CID), 10) + ":" + strconv.FormatUint(uint64(a.Port), 10)
}

// conn is an accepted vsock connection; the runtime poller makes its reads
// and writes interruptible and its deadlines work.
type conn struct {
	*os.File
	local, remote net.Addr
}

func newConn(fd int, local, remote net.Addr) *conn {
	return &conn{File: os.NewFile(uintptr(fd), "vsock:"+remote.String()), local: local, remote: remote}
}

func (c *conn) LocalAddr() net.Addr  { return c.local }
func (c *conn) RemoteAddr() net.Addr { return c.remote }

// CloseWrite shuts the sending half down, so the peer reads EOF.
func (c *conn) CloseWrite() error {
	rc, err := c.File.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Shutdown(int(fd), unix.SHUT_WR) }); err != nil {
		return err
	}
	return serr
}

// DialVsock connects to a vsock port of cid (tests use the local CID with
// the vsock_loopback transport).
func DialVsock(cid uint32, port int) (net.Conn, error) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("create vsock socket: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrVM{CID: cid, Port: uint32(port)}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("connect to vsock %d:%d: %w", cid, port, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vsock: set non-blocking: %w", err)
	}
	return newConn(fd, &Addr{CID: unix.VMADDR_CID_ANY}, &Addr{CID: cid, Port: uint32(port)}), nil
}

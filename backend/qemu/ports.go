package qemu

import (
	"fmt"
	"net"
	"strconv"
)

// freePort asks the kernel for a free TCP port on 127.0.0.1. Another
// process may take it before QEMU binds it; Start retries on that.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port for SSH on 127.0.0.1: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// checkPortFree fails when an explicit host port on 127.0.0.1 is taken.
func checkPortFree(what, proto string, port int) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if proto == "udp" {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return fmt.Errorf("%s %d/udp is already in use on 127.0.0.1: choose another port: %w", what, port, err)
		}
		return c.Close()
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s %d is already in use on 127.0.0.1: choose another port (or 0 for an automatic one): %w", what, port, err)
	}
	return l.Close()
}

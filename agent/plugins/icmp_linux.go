package plugins

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// openICMP opens an ICMP socket: an unprivileged ping socket (SOCK_DGRAM,
// allowed to the groups in net.ipv4.ping_group_range) when it can, else a
// raw one (CAP_NET_RAW). kind says which.
func openICMP() (fd int, kind string, err error) {
	fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	if err == nil {
		return fd, "unprivileged", nil
	}
	dgErr := err
	fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	if err == nil {
		return fd, "raw", nil
	}
	return -1, "", fmt.Errorf("no ICMP socket: an unprivileged ping socket was refused (%v: add the group to net.ipv4.ping_group_range) and a raw socket too (%v: it needs root or CAP_NET_RAW)", dgErr, err)
}

// echo sends count ICMP echo requests to ip, one after the other, each
// waiting up to timeout for its reply, and returns the round-trip times of
// those answered.
func echo(ctx context.Context, ip []byte, count int, timeout time.Duration) ([]time.Duration, string, error) {
	fd, kind, err := openICMP()
	if err != nil {
		return nil, "", err
	}
	defer unix.Close(fd)
	var sa unix.SockaddrInet4
	copy(sa.Addr[:], ip)
	// Connected, the socket receives only this host's packets.
	if err := unix.Connect(fd, &sa); err != nil {
		return nil, kind, fmt.Errorf("connect the ICMP socket: %w", err)
	}
	// A ping socket's id is its port, set by the kernel; a raw one's is ours.
	id := uint16(os.Getpid())
	var rtts []time.Duration
	buf := make([]byte, 1500)
	for seq := 1; seq <= count && ctx.Err() == nil; seq++ {
		req := echoRequest(id, uint16(seq))
		sent := time.Now()
		if _, err := unix.Write(fd, req); err != nil {
			return rtts, kind, fmt.Errorf("send an ICMP echo: %w", err)
		}
		deadline := sent.Add(timeout)
		for {
			left := time.Until(deadline)
			if left <= 0 {
				break
			}
			tv := unix.NsecToTimeval(left.Nanoseconds())
			_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
			n, err := unix.Read(fd, buf)
			if err != nil {
				if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
					continue
				}
				return rtts, kind, fmt.Errorf("receive an ICMP echo reply: %w", err)
			}
			pkt := buf[:n]
			if kind == "raw" {
				if len(pkt) < 20 {
					continue
				}
				pkt = pkt[int(pkt[0]&0x0f)*4:]
			}
			if len(pkt) < 8 || pkt[0] != 0 || binary.BigEndian.Uint16(pkt[6:]) != uint16(seq) {
				continue
			}
			if kind == "raw" && binary.BigEndian.Uint16(pkt[4:]) != id {
				continue
			}
			rtts = append(rtts, time.Since(sent))
			break
		}
	}
	return rtts, kind, nil
}

// echoRequest builds an ICMP echo request with a checksum.
func echoRequest(id, seq uint16) []byte {
	b := make([]byte, 16)
	b[0] = 8 // echo request
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], "mb-agent")
	var sum uint32
	for i := 0; i < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(b[2:], ^uint16(sum))
	return b
}

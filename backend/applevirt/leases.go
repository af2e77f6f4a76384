package applevirt

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// LeasesFile is where macOS's DHCP server for the NAT network (bootpd)
// records its leases.
const LeasesFile = "/var/db/dhcpd_leases"

// Lease is one entry of the leases file.
type Lease struct {
	Name   string
	IP     net.IP
	HWAddr net.HardwareAddr
	// Expires is the lease's end (the file's lease= field).
	Expires time.Time
}

// ParseLeases reads bootpd's leases file: blocks of key=value lines between
// braces. The hardware address is written "1,MAC" (1 is Ethernet) with
// leading zeros dropped from each octet ("1,a2:b:3c:..."). Entries without
// an IP or hardware address are left out.
func ParseLeases(r io.Reader) ([]Lease, error) {
	var leases []Lease
	var cur *Lease
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		switch {
		case text == "":
		case text == "{":
			if cur != nil {
				return nil, fmt.Errorf("leases line %d: a block opens inside another", line)
			}
			cur = &Lease{}
		case text == "}":
			if cur == nil {
				return nil, fmt.Errorf("leases line %d: a block closes that was not opened", line)
			}
			if cur.IP != nil && cur.HWAddr != nil {
				leases = append(leases, *cur)
			}
			cur = nil
		case cur == nil:
			return nil, fmt.Errorf("leases line %d: %q outside a block", line, text)
		default:
			key, val, ok := strings.Cut(text, "=")
			if !ok {
				return nil, fmt.Errorf("leases line %d: %q is not key=value", line, text)
			}
			switch key {
			case "name":
				cur.Name = val
			case "ip_address":
				cur.IP = net.ParseIP(val)
			case "hw_address":
				cur.HWAddr = parseLeaseHW(val)
			case "lease":
				if n, err := strconv.ParseInt(strings.TrimPrefix(val, "0x"), 16, 64); err == nil {
					cur.Expires = time.Unix(n, 0)
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read leases: %w", err)
	}
	if cur != nil {
		return nil, errors.New("leases: the last block is not closed")
	}
	return leases, nil
}

// parseLeaseHW parses "1,a2:b:3c:4:5:6" into a MAC address, or nil.
func parseLeaseHW(s string) net.HardwareAddr {
	typ, addr, ok := strings.Cut(s, ",")
	if !ok || typ != "1" {
		return nil
	}
	parts := strings.Split(addr, ":")
	if len(parts) != 6 {
		return nil
	}
	mac := make(net.HardwareAddr, 6)
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 16, 8)
		if err != nil || p == "" || len(p) > 2 {
			return nil
		}
		mac[i] = byte(n)
	}
	return mac
}

// FindLease returns the IP address of the newest lease for mac in leases.
func FindLease(leases []Lease, mac net.HardwareAddr) (net.IP, bool) {
	var best *Lease
	for i := range leases {
		l := &leases[i]
		if l.HWAddr.String() == mac.String() && (best == nil || l.Expires.After(best.Expires)) {
			best = l
		}
	}
	if best == nil {
		return nil, false
	}
	return best.IP, true
}

// LookupLease reads the leases file at path and returns the guest's NAT
// address for mac: the way to reach a guest that runs no mb-agent relay.
func LookupLease(path string, mac net.HardwareAddr) (net.IP, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("find the guest's address: %w (the guest has not asked for a DHCP lease yet, or runs no DHCP client)", err)
	}
	defer f.Close()
	leases, err := ParseLeases(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ip, ok := FindLease(leases, mac)
	if !ok {
		return nil, fmt.Errorf("no DHCP lease for MAC %s in %s: the guest has not configured its network yet", mac, path)
	}
	return ip, nil
}

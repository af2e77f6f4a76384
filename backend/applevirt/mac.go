package applevirt

import (
	"crypto/sha256"
	"net"
)

// MACFromName derives the VM's MAC address from its name: the same name
// always gets the same address, so the NAT's DHCP server hands the guest the
// same lease and IP address across restarts. The address is locally
// administered and unicast (first octet: bit 1 set, bit 0 clear).
func MACFromName(name string) net.HardwareAddr {
	sum := sha256.Sum256([]byte("mb-applevirt-mac:" + name))
	mac := net.HardwareAddr(append([]byte(nil), sum[:6]...))
	mac[0] = mac[0]&^0x01 | 0x02
	return mac
}

package agent

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/mbvm/mb/agent/qgaproto"
)

func (s *server) cmdInterfaces(_ context.Context, args json.RawMessage) (any, error) {
	if err := decodeArgs(args, &struct{}{}); err != nil {
		return nil, err
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, genericError("list network interfaces: %v", err)
	}
	out := make([]qgaproto.Interface, 0, len(ifaces))
	for _, ifc := range ifaces {
		q := qgaproto.Interface{Name: ifc.Name, HardwareAddress: ifc.HardwareAddr.String()}
		if q.HardwareAddress == "" {
			q.HardwareAddress = "00:00:00:00:00:00"
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ones, _ := ipn.Mask.Size()
			typ := "ipv6"
			if ipn.IP.To4() != nil {
				typ = "ipv4"
			}
			q.IPAddresses = append(q.IPAddresses, qgaproto.IPAddress{Type: typ, Address: ipn.IP.String(), Prefix: ones})
		}
		q.Statistics = interfaceStats(ifc.Name)
		out = append(out, q)
	}
	return out, nil
}

// interfaceStats reads /sys/class/net/<name>/statistics, or returns nil.
func interfaceStats(name string) *qgaproto.InterfaceStats {
	dir := filepath.Join("/sys/class/net", name, "statistics")
	read := func(f string) uint64 {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return 0
		}
		v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		return v
	}
	if _, err := os.Stat(dir); err != nil {
		return nil
	}
	return &qgaproto.InterfaceStats{
		RxBytes: read("rx_bytes"), RxPackets: read("rx_packets"), RxErrs: read("rx_errors"), RxDropped: read("rx_dropped"),
		TxBytes: read("tx_bytes"), TxPackets: read("tx_packets"), TxErrs: read("tx_errors"), TxDropped: read("tx_dropped"),
	}
}

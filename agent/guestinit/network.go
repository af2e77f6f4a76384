package guestinit

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The user-mode network's fixed addresses, used when DHCP gets no answer.
const (
	fallbackAddr = "10.0.2.15/24"
	fallbackGW   = "10.0.2.2"
	fallbackDNS  = "10.0.2.3"
)

// ethernetInterfaces lists the ethernet interfaces (type 1 in sysfs, not
// loopback), sorted by name.
func ethernetInterfaces(sysRoot string) []string {
	types, _ := filepath.Glob(filepath.Join(sysRoot, "class/net/*/type"))
	var out []string
	for _, t := range types {
		data, err := os.ReadFile(t)
		name := filepath.Base(filepath.Dir(t))
		if err != nil || strings.TrimSpace(string(data)) != "1" || name == "lo" {
			continue
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// netConfig brings up lo and the first ethernet interface: DHCP with
// busybox udhcpc first, the user-mode network's fixed address second.
type netConfig struct {
	log     *slog.Logger
	busybox string
	// dhcpScript is udhcpc's -s script.
	dhcpScript string
}

func (n netConfig) run(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, n.busybox, args...)
	cmd.Env = []string{"PATH=" + searchPath}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("busybox %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// up configures the network and returns the interface it configured and
// how ("dhcp" or "static"), or "" when the guest has no ethernet interface.
func (n netConfig) up(ctx context.Context) (iface, how string, err error) {
	if err := n.run(ctx, "ip", "link", "set", "lo", "up"); err != nil {
		return "", "", err
	}
	var ifaces []string
	// virtio_net has probed by the time its module is loaded; wait a
	// little in case a device shows up late, not long in a guest without one.
	for wait := 20 * time.Millisecond; ; wait *= 2 {
		ifaces = ethernetInterfaces("/sys")
		if len(ifaces) > 0 || wait > 300*time.Millisecond {
			break
		}
		select {
		case <-ctx.Done():
			return "", "", ctx.Err()
		case <-time.After(wait):
		}
	}
	if len(ifaces) == 0 {
		return "", "", nil
	}
	iface = ifaces[0]
	if err := n.run(ctx, "ip", "link", "set", iface, "up"); err != nil {
		return iface, "", err
	}
	// Three discovers a second apart, then give up (-n) and quit once
	// configured (-q). The script sets the address, route and resolv.conf.
	dhcpErr := n.run(ctx, "udhcpc", "-i", iface, "-f", "-q", "-n", "-t", "3", "-T", "1", "-s", n.dhcpScript)
	if dhcpErr == nil {
		return iface, "dhcp", nil
	}
	n.log.Warn("DHCP failed, using the fixed user-mode network address", "iface", iface, "addr", fallbackAddr, "err", dhcpErr)
	if err := n.run(ctx, "ip", "addr", "add", fallbackAddr, "dev", iface); err != nil {
		return iface, "", err
	}
	if err := n.run(ctx, "ip", "route", "add", "default", "via", fallbackGW, "dev", iface); err != nil {
		return iface, "", err
	}
	if err := os.WriteFile("/etc/resolv.conf", []byte("nameserver "+fallbackDNS+"\n"), 0o644); err != nil {
		return iface, "", fmt.Errorf("write resolv.conf: %w", err)
	}
	return iface, "static", nil
}

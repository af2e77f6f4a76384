package qgaproto

// Parsers of the Linux /proc files that guest metrics come from. Both sides
// use them: mb-agent reads the files itself, and the host reads them through
// guest-file-read from a stock qemu-ga.

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// ParseProcStat parses /proc/stat: the aggregate "cpu" line and the number of
// "cpuN" lines.
func ParseProcStat(data []byte) (CPUCounters, error) {
	var c CPUCounters
	found := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		if f[0] != "cpu" {
			c.CPUs++
			continue
		}
		vals := make([]uint64, 8)
		for i := 0; i < len(vals) && i+1 < len(f); i++ {
			v, err := strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				return c, fmt.Errorf("parse /proc/stat cpu field %d %q: %w", i+1, f[i+1], err)
			}
			vals[i] = v
		}
		c.User, c.Nice, c.System, c.Idle = vals[0], vals[1], vals[2], vals[3]
		c.IOWait, c.IRQ, c.SoftIRQ, c.Steal = vals[4], vals[5], vals[6], vals[7]
		found = true
	}
	if !found {
		return c, fmt.Errorf("parse /proc/stat: no cpu line")
	}
	return c, nil
}

// ParseMeminfo parses /proc/meminfo.
func ParseMeminfo(data []byte) (Memory, error) {
	var m Memory
	kb := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		kb[key] = v
	}
	total, ok := kb["MemTotal"]
	if !ok {
		return m, fmt.Errorf("parse /proc/meminfo: no MemTotal")
	}
	avail, ok := kb["MemAvailable"]
	if !ok {
		avail = kb["MemFree"] + kb["Buffers"] + kb["Cached"]
	}
	m.TotalBytes = total * 1024
	m.AvailableBytes = min(avail, total) * 1024
	m.UsedBytes = m.TotalBytes - m.AvailableBytes
	m.SwapTotalBytes = kb["SwapTotal"] * 1024
	m.SwapFreeBytes = kb["SwapFree"] * 1024
	return m, nil
}

// ParseLoadavg parses /proc/loadavg into the 1, 5 and 15 minute averages.
func ParseLoadavg(data []byte) ([]float64, error) {
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return nil, fmt.Errorf("parse /proc/loadavg %q: want 3 numbers", data)
	}
	out := make([]float64, 3)
	for i := range out {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return nil, fmt.Errorf("parse /proc/loadavg: %w", err)
		}
		out[i] = v
	}
	return out, nil
}

// ParseUptime parses /proc/uptime into seconds since boot.
func ParseUptime(data []byte) (float64, error) {
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0, fmt.Errorf("parse /proc/uptime: empty")
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, fmt.Errorf("parse /proc/uptime: %w", err)
	}
	return v, nil
}

// ParseNetDev parses /proc/net/dev into per-interface byte counters.
func ParseNetDev(data []byte) ([]NetworkCounters, error) {
	var out []NetworkCounters
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 9 {
			continue
		}
		rx, err1 := strconv.ParseUint(f[0], 10, 64)
		tx, err2 := strconv.ParseUint(f[8], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, NetworkCounters{Name: strings.TrimSpace(name), RxBytes: rx, TxBytes: tx})
	}
	return out, nil
}

// Mount is one line of /proc/mounts.
type Mount struct {
	Device, Mountpoint, Type string
}

// ParseMounts parses /proc/mounts, unescaping octal escapes (\040 for a space).
func ParseMounts(data []byte) []Mount {
	var out []Mount
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 {
			continue
		}
		out = append(out, Mount{Device: unescapeMount(f[0]), Mountpoint: unescapeMount(f[1]), Type: f[2]})
	}
	return out
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// pseudoFS are filesystem types that hold no user data.
var pseudoFS = map[string]bool{
	"proc": true, "sysfs": true, "devtmpfs": true, "devpts": true, "cgroup": true,
	"cgroup2": true, "securityfs": true, "debugfs": true, "tracefs": true, "pstore": true,
	"bpf": true, "mqueue": true, "hugetlbfs": true, "configfs": true, "fusectl": true,
	"binfmt_misc": true, "autofs": true, "efivarfs": true, "rpc_pipefs": true, "nsfs": true,
	"selinuxfs": true, "ramfs": true, "rootfs": true, "overlay": false, "squashfs": true,
	"iso9660": true, "nfsd": true, "fuse.gvfsd-fuse": true, "fuse.portal": true,
}

// IsPseudoFS reports whether a mount holds no user data worth reporting: a
// pseudo filesystem, or a tmpfs other than the root.
func IsPseudoFS(m Mount) bool {
	if m.Type == "tmpfs" {
		return m.Mountpoint != "/"
	}
	return pseudoFS[m.Type]
}

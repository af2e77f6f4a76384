package agent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mbvm/mb/agent/qgaproto"
)

// cmdMetrics answers mb-get-metrics: cumulative counters read on demand,
// with no sampling in between calls. A section whose source cannot be read
// is left out.
func (s *server) cmdMetrics(_ context.Context, args json.RawMessage) (any, error) {
	if err := decodeArgs(args, &struct{}{}); err != nil {
		return nil, err
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(s.procRoot, name))
		if err != nil {
			s.log.Debug("metrics source unreadable", "file", name, "error", err)
			return nil
		}
		return b
	}
	m := qgaproto.Metrics{Source: "mb-agent", TimeNs: time.Now().UnixNano()}
	if b := read("uptime"); b != nil {
		m.UptimeSeconds, _ = qgaproto.ParseUptime(b)
	}
	if b := read("stat"); b != nil {
		if c, err := qgaproto.ParseProcStat(b); err == nil {
			m.CPU = &c
		}
	}
	if b := read("meminfo"); b != nil {
		if mem, err := qgaproto.ParseMeminfo(b); err == nil {
			m.Memory = &mem
		}
	}
	if b := read("loadavg"); b != nil {
		m.LoadAvg, _ = qgaproto.ParseLoadavg(b)
	}
	if b := read("net/dev"); b != nil {
		m.Interfaces, _ = qgaproto.ParseNetDev(b)
	}
	if b := read("mounts"); b != nil {
		m.Filesystems = filesystems(qgaproto.ParseMounts(b))
	}
	return m, nil
}

// filesystems statfs()es every real mount once, skipping pseudo
// filesystems, empty ones and repeated mounts of one device.
func filesystems(mounts []qgaproto.Mount) []qgaproto.Filesystem {
	var out []qgaproto.Filesystem
	seen := map[string]bool{}
	for _, m := range mounts {
		if qgaproto.IsPseudoFS(m) || seen[m.Mountpoint] {
			continue
		}
		var st unix.Statfs_t
		if err := unix.Statfs(m.Mountpoint, &st); err != nil || st.Blocks == 0 {
			continue
		}
		key := m.Device + "\x00" + m.Type
		if m.Device != "none" && m.Device != "tmpfs" && seen[key] {
			continue
		}
		seen[m.Mountpoint], seen[key] = true, true
		bs := uint64(st.Bsize)
		out = append(out, qgaproto.Filesystem{
			Mountpoint: m.Mountpoint, Device: m.Device, Type: m.Type,
			TotalBytes: st.Blocks * bs, UsedBytes: (st.Blocks - st.Bfree) * bs, FreeBytes: st.Bavail * bs,
		})
	}
	return out
}

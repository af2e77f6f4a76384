package qgaproto

import "testing"

func TestStat(t *testing.T) {
	c, err := ParseProcStat([]byte("cpu  10 1 5 100 3 0 2 7 0 0\ncpu0 5 0 2 50 1 0 1 3 0 0\ncpu1 5 1 3 50 2 0 1 4 0 0\nintr 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.CPUs != 2 || c.User != 10 || c.Idle != 100 || c.Steal != 7 || c.Total() != 128 {
		t.Errorf("Stat = %+v", c)
	}
	if _, err := ParseProcStat([]byte("intr 1\n")); err == nil {
		t.Error("Stat without cpu line: want error")
	}
}

func TestMeminfo(t *testing.T) {
	m, err := ParseMeminfo([]byte("MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 600 kB\nSwapTotal: 50 kB\nSwapFree: 20 kB\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m.TotalBytes != 1024000 || m.AvailableBytes != 614400 || m.UsedBytes != 409600 || m.SwapFreeBytes != 20480 {
		t.Errorf("Meminfo = %+v", m)
	}
}

func TestLoadUptimeNetDevMounts(t *testing.T) {
	l, err := ParseLoadavg([]byte("0.50 0.25 0.10 1/80 123\n"))
	if err != nil || l[0] != 0.5 || l[2] != 0.1 {
		t.Errorf("Loadavg = %v, %v", l, err)
	}
	if _, err := ParseLoadavg([]byte("x")); err == nil {
		t.Error("Loadavg garbage: want error")
	}
	u, err := ParseUptime([]byte("123.45 200.00\n"))
	if err != nil || u != 123.45 {
		t.Errorf("Uptime = %v, %v", u, err)
	}
	n, _ := ParseNetDev([]byte("Inter-|   Receive\n face |bytes\n  eth0: 100 2 0 0 0 0 0 0 200 3 0 0 0 0 0 0\n    lo: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n"))
	if len(n) != 2 || n[0].Name != "eth0" || n[0].RxBytes != 100 || n[0].TxBytes != 200 {
		t.Errorf("NetDev = %+v", n)
	}
	ms := ParseMounts([]byte("proc /proc proc rw 0 0\n/dev/vda1 /my\\040disk ext4 rw 0 0\n"))
	if len(ms) != 2 || ms[1].Mountpoint != "/my disk" || !IsPseudoFS(ms[0]) || IsPseudoFS(ms[1]) {
		t.Errorf("Mounts = %+v", ms)
	}
}

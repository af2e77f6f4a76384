package applevirt

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const sampleLeases = `{
	name=dev-1
	ip_address=192.168.64.3
	hw_address=1,a2:b:3c:4:5:6
	identifier=1,a2:b:3c:4:5:6
	lease=0x65000000
}
{
	name=dev-1
	ip_address=192.168.64.7
	hw_address=1,a2:b:3c:4:5:6
	identifier=1,a2:b:3c:4:5:6
	lease=0x65001000
}
{
	name=other
	ip_address=192.168.64.2
	hw_address=1,2:0:0:0:0:1
	lease=0x65000000
}
{
	name=no-hw
	ip_address=192.168.64.9
	lease=0x65000000
}
`

func TestParseLeases(t *testing.T) {
	leases, err := ParseLeases(strings.NewReader(sampleLeases))
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != 3 {
		t.Fatalf("%d leases, want 3 (the one without a hardware address left out): %+v", len(leases), leases)
	}
	l := leases[0]
	if l.Name != "dev-1" || !l.IP.Equal(net.ParseIP("192.168.64.3")) || l.HWAddr.String() != "a2:0b:3c:04:05:06" || !l.Expires.Equal(time.Unix(0x65000000, 0)) {
		t.Fatalf("first lease %+v", l)
	}
	mac, _ := net.ParseMAC("a2:0b:3c:04:05:06")
	ip, ok := FindLease(leases, mac)
	if !ok || ip.String() != "192.168.64.7" {
		t.Fatalf("FindLease = %v, %v; want the newest lease 192.168.64.7", ip, ok)
	}
	if _, ok := FindLease(leases, MACFromName("absent")); ok {
		t.Fatal("FindLease found a lease for an unknown MAC")
	}
}

func TestParseLeasesBad(t *testing.T) {
	for in, want := range map[string]string{
		"{\n{\n":              "opens inside another",
		"}\n":                 "not opened",
		"name=x\n":            "outside a block",
		"{\nname\n}\n":        "not key=value",
		"{\nip_address=1.2\n": "not closed",
	} {
		if _, err := ParseLeases(strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
	for _, hw := range []string{"a2:b:3c:4:5:6", "6,a2:b:3c:4:5:6", "1,a2:b:3c:4:5", "1,a2:b:3c:4:5:zz", "1,a2::3c:4:5:6", "1,123:b:3c:4:5:6"} {
		if got := parseLeaseHW(hw); got != nil {
			t.Errorf("parseLeaseHW(%q) = %s, want nil", hw, got)
		}
	}
}

func TestLookupLease(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dhcpd_leases")
	if _, err := LookupLease(path, MACFromName("x")); err == nil || !strings.Contains(err.Error(), "has not asked for a DHCP lease") {
		t.Fatalf("missing file: %v", err)
	}
	if err := os.WriteFile(path, []byte(sampleLeases), 0o600); err != nil {
		t.Fatal(err)
	}
	mac, _ := net.ParseMAC("02:00:00:00:00:01")
	ip, err := LookupLease(path, mac)
	if err != nil || ip.String() != "192.168.64.2" {
		t.Fatalf("LookupLease = %v, %v", ip, err)
	}
	if _, err := LookupLease(path, MACFromName("x")); err == nil || !strings.Contains(err.Error(), "no DHCP lease for MAC") {
		t.Fatalf("unknown MAC: %v", err)
	}
}

package fleet

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/internal/testenv"
)

// startNamed writes a zone that accepts TSIG-signed updates and runs a
// real bind9 on a free loopback port; it returns the port and the key
// file for nsupdate -k.
func startNamed(t *testing.T, named string, port int) string {
	t.Helper()
	dir := t.TempDir()
	key := `key "mbtest" { algorithm hmac-sha256; secret "bWItZHluZG5zLXRlc3Qta2V5LTMyLWJ5dGVzLWxvbmc="; };` + "\n"
	keyFile := filepath.Join(dir, "mbtest.key")
	conf := fmt.Sprintf(`options {
	directory "%[1]s";
	pid-file "%[1]s/named.pid";
	session-keyfile "%[1]s/session.key";
	listen-on port %[2]d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
};
controls { };
%[3]s
zone "example.test" {
	type primary;
	file "%[1]s/example.test.zone";
	allow-update { key "mbtest"; };
};
`, dir, port, key)
	zone := "$TTL 60\n@ IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 60\n@ IN NS ns.example.test.\nns IN A 127.0.0.1\n"
	for name, text := range map[string]string{"named.conf": conf, "example.test.zone": zone, "mbtest.key": key} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(named, "-g", "-4", "-c", filepath.Join(dir, "named.conf"))
	log, err := os.Create(filepath.Join(dir, "named.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("named's log:\n%s", b)
		}
	})
	return keyFile
}

// freePort returns a loopback port free for TCP (and, in practice, UDP).
func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func dig(t *testing.T, bin string, port int, name, rr string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, "@127.0.0.1", "-p", fmt.Sprint(port), "+short", "+tries=1", "+time=2", name, rr).Output()
	return strings.TrimSpace(string(out))
}

// TestDynDNSBind9 updates a real bind9 through nsupdate: the first update
// fails (the server is not up yet) and is retried in the background while
// registrations keep being answered; address changes follow.
func TestDynDNSBind9(t *testing.T) {
	named := testenv.Tool(t, "named", "bind9")
	nsupdate := testenv.Tool(t, "nsupdate", "bind9-dnsutils")
	digBin := testenv.Tool(t, "dig", "bind9-dnsutils")
	port := freePort(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "mbtest.key")
	s := Settings{
		Hosts: map[string]HostSettings{"web1": {DynDNS: true}, "web6": {DynDNS: true}},
		DNS: DNSSettings{Domains: []string{"example.test"}, Nsupdate: nsupdate, KeyFile: keyFile,
			Server: fmt.Sprintf("127.0.0.1:%d", port), TTL: 30 * time.Second},
	}
	r := newRig(t, s, false)
	if code, m := r.register("web1", "192.0.2.50", "eth0", ""); code != 200 {
		t.Fatalf("register: %d %v", code, m)
	}
	r.register("other", "192.0.2.99", "eth0", "") // no dyndns
	waitFor(t, "a failed DNS update (no server yet)", func() bool { return r.f.Stats().DNSFailures > 0 })

	realKey := startNamed(t, named, port)
	if err := os.Symlink(realKey, keyFile); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "web1.example.test resolving", func() bool {
		return dig(t, digBin, port, "web1.example.test", "A") == "192.0.2.50"
	})
	r.register("web1", "192.0.2.51", "eth0", "")
	r.register("web6", "2001:db8::6", "eth0", "")
	waitFor(t, "the new addresses resolving", func() bool {
		return dig(t, digBin, port, "web1.example.test", "A") == "192.0.2.51" &&
			dig(t, digBin, port, "web6.example.test", "AAAA") == "2001:db8::6"
	})
	if got := dig(t, digBin, port, "other.example.test", "A"); got != "" {
		t.Errorf("a host without dyndns got a record: %q", got)
	}
}

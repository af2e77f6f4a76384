package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mbvm/mb/internal/hbcwire"
)

// TestMonitorServeFleet: `mb monitor serve` hosts the fleet receivers: a
// VM tracker registration on listen and an hbc heartbeat on
// heartbeat_listen show up in `mb monitor hosts` with their sources.
func TestMonitorServeFleet(t *testing.T) {
	e := newEnv(t)
	addr := freeLoopback(t)
	hb := freeLoopback(t)
	dir := filepath.Join(e.home, "fleet")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "monitor.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("listen: %s\nheartbeat_listen: %s\n", addr, hb)), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serve := e.command(ctx, "monitor", "serve", "-c", cfg)
	log := &syncBuffer{}
	serve.Stderr = log
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer serve.Process.Kill()
	url := "--url=http://" + addr
	e.eventually("mb monitor serve to answer", func() bool { return e.mb("monitor", url, "hosts").code == 0 })

	resp, err := http.Post("http://"+addr+"/api/register", "application/json",
		strings.NewReader(`{"hostname":"tracked-1","ip_address":"192.0.2.5","interface":"eth0"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("registration: %s", resp.Status)
	}
	conn, err := net.Dial("udp", hb)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	e.eventually("the heartbeat's host listed", func() bool {
		m := hbcwire.New(hbcwire.HTB).Add("name", "beating-1").Add("timestamp", float64(time.Now().UnixNano())/1e9).Add("interval", 10)
		b, _ := hbcwire.Encode(m, hbcwire.EncodeOptions{})
		conn.Write(b)
		return strings.Contains(e.ok("monitor", url, "hosts"), "beating-1")
	})
	out := e.ok("monitor", url, "hosts")
	for _, want := range []string{"tracked-1", "tracker", "beating-1", "hbc"} {
		if !strings.Contains(out, want) {
			t.Errorf("hosts lack %q:\n%s", want, out)
		}
	}
	if err := serve.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := serve.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v\n%s", err, log.String())
	}
}

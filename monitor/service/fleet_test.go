package service

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mbvm/mb/internal/hbcwire"
)

const fleetConfig = `
listen: 127.0.0.1:0
heartbeat_listen: 127.0.0.1:0
register_token: reg-token
hmac_key: hb-key
` + rolesConfig

// httpDo makes one request on the service's TCP listener.
func httpDo(t *testing.T, s *started, method, path, user, pass, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.Addr().String()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: 2 * time.Minute}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestFleetOnTheListener: the fleet's endpoints are open on the TCP
// listener (register_token guards registration) while the API needs a
// user; an hbc heartbeat is received on heartbeat_listen; a command is
// queued through the API for the next heartbeat.
func TestFleetOnTheListener(t *testing.T) {
	s := start(t, t.TempDir(), fleetConfig)
	reg := `{"hostname":"tracked","ip_address":"192.0.2.7","interface":"eth0"}`
	if code, b := httpDo(t, s, "POST", "/api/register", "", "", "", reg); code != 401 {
		t.Errorf("registration without the token: %d %s", code, b)
	}
	if code, b := httpDo(t, s, "POST", "/api/register", "", "", "reg-token", reg); code != 200 {
		t.Fatalf("registration: %d %s", code, b)
	}
	if code, _ := httpDo(t, s, "GET", "/api/0/hosts", "", "", "reg-token", ""); code != 401 {
		t.Errorf("the API without a user: %d", code)
	}
	code, b := httpDo(t, s, "GET", "/api/0/hosts", "alice", "a-pass", "", "")
	var hosts struct{ Hosts []HostJSON }
	if code != 200 || json.Unmarshal(b, &hosts) != nil {
		t.Fatalf("hosts: %d %s", code, b)
	}
	found := false
	for _, h := range hosts.Hosts {
		found = found || (h.Name == "tracked" && h.Source == "tracker" && h.Address == "192.0.2.7")
	}
	if !found {
		t.Errorf("tracked host not listed: %s", b)
	}
	if code, b := httpDo(t, s, "POST", "/api/0/hosts/tracked/command", "alice", "a-pass", "", `{"command":"uptime"}`); code != 409 {
		t.Errorf("command for a tracker host: %d %s", code, b)
	}

	// An hbc host, and a command for it from its manager.
	hb := s.Fleet().HeartbeatAddr().(*net.UDPAddr)
	conn, err := net.DialUDP("udp", nil, hb)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	key := []byte("hb-key")
	beat := func() {
		m := hbcwire.New(hbcwire.HTB).Add("name", "db-01").Add("timestamp", float64(time.Now().UnixNano())/1e9).Add("interval", 10)
		b, _ := hbcwire.Encode(m, hbcwire.EncodeOptions{Key: key})
		conn.Write(b)
	}
	waitFor(t, "db-01 heartbeat", func() bool {
		beat()
		time.Sleep(100 * time.Millisecond)
		h, ok := s.Engine().Host("db-01")
		return ok && h.Source == "hbc"
	})
	if code, _ := httpDo(t, s, "POST", "/api/0/hosts/db-01/command", "bob", "b-pass", "", `{"command":"uptime"}`); code != 404 && code != 403 {
		t.Errorf("bob (no role on db-01) queued a command: %d", code)
	}
	code, b = httpDo(t, s, "POST", "/api/0/hosts/db-01/command", "carol", "c-pass", "", `{"command":"uptime"}`)
	if code != 202 {
		t.Fatalf("carol (manager) queueing: %d %s", code, b)
	}
	var dec hbcwire.Decoder
	buf := make([]byte, 65536)
	var cmd *hbcwire.Message
	deadline := time.Now().Add(2 * time.Minute)
	for cmd == nil && time.Now().Before(deadline) {
		beat()
		conn.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, err := conn.Read(buf)
			if err != nil {
				break
			}
			if m, err := dec.Decode(buf[:n]); err == nil && m.ID == hbcwire.CMD {
				cmd = m
				break
			}
		}
	}
	if cmd == nil || cmd.String("command") != "uptime" || cmd.Verify(key) != nil {
		t.Fatalf("CMD: %+v", cmd)
	}
	code, b = httpDo(t, s, "GET", "/api/0/fleet", "alice", "a-pass", "", "")
	if code != 200 || !bytes.Contains(b, []byte(`"commands": 1`)) || !bytes.Contains(b, []byte(`"registrations": 1`)) {
		t.Errorf("/api/0/fleet: %d %s", code, b)
	}
	code, b = httpDo(t, s, "GET", "/metrics", "alice", "a-pass", "", "")
	if code != 200 || !bytes.Contains(b, []byte(`mb_monitor_fleet_events_total{event="registrations"} 1`)) {
		t.Errorf("/metrics lacks the fleet counters: %d", code)
	}
}

// TestFleetSlowloris: connections that trickle their headers hold the TCP
// listener's slots; heartbeats keep being ingested meanwhile, and a
// registration gets through once the slow ones time out.
func TestFleetSlowloris(t *testing.T) {
	s := start(t, t.TempDir(), fleetConfig)
	addr := s.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	for i := 0; i < MaxConns+36; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
				if err != nil {
					continue
				}
				stop := context.AfterFunc(ctx, func() { c.Close() })
				_, err = fmt.Fprintf(c, "POST /api/register HTTP/1.1\r\nHost: x\r\n")
				for err == nil && ctx.Err() == nil {
					time.Sleep(500 * time.Millisecond)
					_, err = c.Write([]byte("X-a: b\r\n"))
				}
				stop()
				c.Close()
			}
		}()
	}
	hb := s.Fleet().HeartbeatAddr().(*net.UDPAddr)
	conn, err := net.DialUDP("udp", nil, hb)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	before := s.Fleet().Stats().HTB
	waitFor(t, "heartbeats ingested during the attack", func() bool {
		m := hbcwire.New(hbcwire.HTB).Add("name", "steady").Add("timestamp", float64(time.Now().UnixNano())/1e9).Add("interval", 10)
		b, _ := hbcwire.Encode(m, hbcwire.EncodeOptions{Key: []byte("hb-key")})
		conn.Write(b)
		time.Sleep(50 * time.Millisecond)
		return s.Fleet().Stats().HTB >= before+5
	})
	reg := `{"hostname":"patient","ip_address":"192.0.2.8"}`
	if code, b := httpDo(t, s, "POST", "/api/register", "", "", "reg-token", reg); code != 200 {
		t.Fatalf("registration during the attack: %d %s", code, b)
	}
}

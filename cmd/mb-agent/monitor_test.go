package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mbvm/mb/internal/testenv"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startMonitor builds mb and runs `mb monitor serve` with config (listen
// and heartbeat_listen on 127.0.0.1:0 are added); it returns the API's
// base URL and the heartbeat address.
func startMonitor(t *testing.T, config string) (api, hb string, out *lockedBuf) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "mb")
	build := exec.Command("go", "build", "-o", bin, "./cmd/mb")
	build.Dir = filepath.Join("..", "..")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/mb: %v\n%s", err, b)
	}
	cfg := filepath.Join(dir, "monitor.yaml")
	if err := os.WriteFile(cfg, []byte("listen: 127.0.0.1:0\nheartbeat_listen: 127.0.0.1:0\n"+config), 0o600); err != nil {
		t.Fatal(err)
	}
	out = &lockedBuf{}
	cmd := exec.Command(bin, "monitor", "serve", "-c", cfg, "--state", filepath.Join(dir, "state"))
	cmd.Env = append(os.Environ(), "MB_HOME="+filepath.Join(dir, "home"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	re := regexp.MustCompile(`monitor serving .* addr=(127\.0\.0\.1:\d+)`)
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if sm := re.FindStringSubmatch(out.String()); sm != nil {
			api = "http://" + sm[1]
			break
		}
		select {
		case <-exited:
			t.Fatalf("mb monitor serve exited:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mb monitor serve did not start listening:\n%s", out.String())
		}
	}
	var fl struct {
		HeartbeatListen string `json:"heartbeat_listen"`
	}
	if code := apiDo(t, "GET", api+"/api/0/fleet", "", &fl); code != http.StatusOK || fl.HeartbeatListen == "" {
		t.Fatalf("GET fleet: %d %+v", code, fl)
	}
	return api, fl.HeartbeatListen, out
}

func apiDo(t *testing.T, method, url, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, url, err, data)
		}
	}
	return resp.StatusCode
}

// TestHeartbeatSignedAgainstTheMonitor runs mb-agent heartbeat with a
// shared hmac_key and --allow-commands against a real monitor: the
// monitor accepts the signed heartbeats and plugin data (it refuses
// unsigned or replayed ones from a host that signs), and a command queued
// through its API runs on the client, its result coming back as plugin
// data.
func TestHeartbeatSignedAgainstTheMonitor(t *testing.T) {
	api, hb, monLog := startMonitor(t, "hmac_key: s3cret-key\nhmac_required: true\n")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "hbc.yaml")
	if err := os.WriteFile(cfg, []byte("interval: 1\nhmac_key: s3cret-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startChild(t, "heartbeat", "--allow-commands", "-c", cfg, "-n", "signed-1", hb)
	type host struct {
		Name         string   `json:"name"`
		Source       string   `json:"source"`
		Reachability string   `json:"reachability"`
		Plugins      []string `json:"plugins"`
	}
	waitHost := func(what string, ok func(host) bool) {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
			var hs struct {
				Hosts []host `json:"hosts"`
			}
			apiDo(t, "GET", api+"/api/0/hosts", "", &hs)
			for _, h := range hs.Hosts {
				if h.Name == "signed-1" && ok(h) {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("the monitor shows no signed-1 %s within 2 minutes: %+v\nmb-agent:\n%s\nmonitor:\n%s", what, hs.Hosts, c.log(), monLog.String())
			}
		}
	}
	waitHost("up from hbc with os_info", func(h host) bool {
		return h.Source == "hbc" && h.Reachability == "up" && strings.Contains(strings.Join(h.Plugins, ","), "os_info")
	})
	marker := filepath.Join(dir, "ran")
	var queued struct {
		ID string `json:"id"`
	}
	if code := apiDo(t, "POST", api+"/api/0/hosts/signed-1/command", fmt.Sprintf(`{"command":"touch %s; echo done"}`, marker), &queued); code != http.StatusAccepted {
		t.Fatalf("queue a command: status %d", code)
	}
	waitHost("with the command's result", func(h host) bool { return strings.Contains(strings.Join(h.Plugins, ","), "command") })
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the command did not run: %v\n%s", err, c.log())
	}
	var p struct {
		Data map[string]any `json:"data"`
	}
	apiDo(t, "GET", api+"/api/0/hosts/signed-1/plugins/command", "", &p)
	if p.Data["id"] != queued.ID || p.Data["output"] != "done\n" {
		t.Errorf("the command's result as the monitor has it: %v (queued id %s)", p.Data, queued.ID)
	}
}

// TestRegisterAgainstTheMonitor: mb-agent register with the monitor's
// register_token is listed in /api/vms; without the token it gives up
// after 3 attempts naming --token.
func TestRegisterAgainstTheMonitor(t *testing.T) {
	iface, ip := hostIPv4Interface()
	if iface == "" {
		testenv.Need(t, "a network interface with an IPv4 address other than loopback")
	}
	api, _, _ := startMonitor(t, "register_token: reg-tok\n")
	bad := startChild(t, "register", "--api", api, "--interface", iface, "--retry", "10ms")
	if code := bad.wait(t); code != 1 || !strings.Contains(bad.log(), "--token") {
		t.Errorf("without the token: exit %d, want 1 and a message naming --token:\n%s", code, bad.log())
	}
	c := startChildEnv(t, []string{"MB_REGISTER_TOKEN=reg-tok"}, "register", "-api", api, "-interface", iface, "-interval", "1")
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		req, _ := http.NewRequest("GET", api+"/api/vms", nil)
		req.Header.Set("Authorization", "Bearer reg-tok")
		var vms []struct {
			Hostname  string `json:"hostname"`
			IPAddress string `json:"ip_address"`
			Interface string `json:"interface"`
			Status    string `json:"status"`
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&vms)
			resp.Body.Close()
		}
		if len(vms) == 1 && vms[0].IPAddress == ip && vms[0].Interface == iface && vms[0].Status == "online" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/api/vms %+v, want this machine (%s on %s) online\n%s", vms, ip, iface, c.log())
		}
	}
}

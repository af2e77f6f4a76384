//go:build linux

package guestinit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// reportWait bounds each wait for the monitor to see what the guest sent:
// generous, for a loaded machine under TCG.
const reportWait = 2 * time.Minute

// monitorProc is a real `mb monitor serve` on the host's loopback, with
// the fleet receivers on: the VM tracker API on its HTTP listener and hbc
// heartbeats on UDP. The guest reaches it as 10.0.2.2 through QEMU's user
// network.
type monitorProc struct {
	api               string // http://127.0.0.1:PORT
	httpPort, udpPort string
	out               *lockedBuf
}

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

// startMonitor builds mb and runs `mb monitor serve` with both fleet
// receivers on ports it picks itself, read back from its log and API.
func startMonitor(t *testing.T) *monitorProc {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "mb")
	build := exec.Command("go", "build", "-o", bin, "./cmd/mb")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/mb: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "monitor.yaml")
	// grace 2 s: with 1 s heartbeats a silent host is overdue after 3 s.
	if err := os.WriteFile(cfg, []byte("listen: 127.0.0.1:0\nheartbeat_listen: 127.0.0.1:0\ngrace: 2s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := &monitorProc{out: &lockedBuf{}}
	cmd := exec.Command(bin, "monitor", "serve", "-c", cfg, "--state", filepath.Join(dir, "state"))
	cmd.Env = append(os.Environ(), "MB_HOME="+filepath.Join(dir, "home"))
	cmd.Stdout, cmd.Stderr = m.out, m.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
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
	re := regexp.MustCompile(`monitor serving .* addr=127\.0\.0\.1:(\d+)`)
	for deadline := time.Now().Add(reportWait); ; time.Sleep(50 * time.Millisecond) {
		if sm := re.FindStringSubmatch(m.out.String()); sm != nil {
			m.httpPort = sm[1]
			break
		}
		select {
		case <-exited:
			t.Fatalf("mb monitor serve exited:\n%s", m.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mb monitor serve did not start listening:\n%s", m.out.String())
		}
	}
	m.api = "http://127.0.0.1:" + m.httpPort
	var fl struct {
		HeartbeatListen string `json:"heartbeat_listen"`
	}
	m.get(t, "/api/0/fleet", &fl)
	_, port, ok := strings.Cut(fl.HeartbeatListen, "127.0.0.1:")
	if !ok {
		t.Fatalf("the monitor's heartbeat address %q", fl.HeartbeatListen)
	}
	m.udpPort = port
	return m
}

// get decodes a GET of the monitor's path into out.
func (m *monitorProc) get(t *testing.T, path string, out any) {
	t.Helper()
	c := &http.Client{Timeout: time.Minute}
	resp, err := c.Get(m.api + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, body)
	}
}

// hostView is what the test reads of the monitor's HOST.
type hostView struct {
	Name         string   `json:"name"`
	Source       string   `json:"source"`
	Sources      []string `json:"sources"`
	Reachability string   `json:"reachability"`
	Address      string   `json:"address"`
	RTT          *float64 `json:"rtt_ms"`
	Plugins      []string `json:"plugins"`
}

type alertView struct {
	Plugin string `json:"plugin"`
	Field  string `json:"field"`
	Level  string `json:"level"`
}

// waitHost polls the monitor until host name satisfies ok.
func (m *monitorProc) waitHost(t *testing.T, vm *testVM, name, what string, ok func(hostView) bool) hostView {
	t.Helper()
	var last hostView
	for deadline := time.Now().Add(reportWait); ; time.Sleep(200 * time.Millisecond) {
		var hs struct {
			Hosts []hostView `json:"hosts"`
		}
		m.get(t, "/api/0/hosts", &hs)
		for _, h := range hs.Hosts {
			if h.Name == name {
				last = h
				if ok(h) {
					return h
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the monitor does not show %s %s within %s (last: %+v)\nmonitor log:\n%s\nconsole:\n%s",
				name, what, reportWait, last, tail(m.out.String()), tail(vm.serialLog()))
		}
	}
}

// waitReachAlert polls until the host's reachability alert has level.
func (m *monitorProc) waitReachAlert(t *testing.T, name, level string) {
	t.Helper()
	var last []alertView
	for deadline := time.Now().Add(reportWait); ; time.Sleep(200 * time.Millisecond) {
		var as struct {
			Alerts []alertView `json:"alerts"`
		}
		m.get(t, "/api/0/alerts?all=true&host="+url.QueryEscape(name), &as)
		last = as.Alerts
		for _, a := range as.Alerts {
			if a.Plugin == "reachability" && a.Level == level {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s reachability alert for %s within %s: %+v", level, name, reportWait, last)
		}
	}
}

// guestSh runs a shell script in the guest through the agent.
func guestSh(t *testing.T, ctx context.Context, q *qgaConn, script string) string {
	t.Helper()
	st, err := q.run(ctx, "/bin/sh", "-c", script)
	if err != nil {
		t.Fatalf("guest: %s: %v", script, err)
	}
	if st.ExitCode == nil || *st.ExitCode != 0 {
		t.Fatalf("guest: %s: exit %v: %s", script, st.ExitCode, st.OutData)
	}
	return string(st.OutData)
}

// signalReporter is a guest script that sends sig to the mb-agent
// processes whose command line starts with "mb-agent SUBCOMMAND" and
// prints how many it signalled.
func signalReporter(sub, sig string) string {
	return fmt.Sprintf(`n=0; for d in /proc/[0-9]*; do
  if tr '\0' ' ' < $d/cmdline 2>/dev/null | grep -q '^mb-agent %s '; then kill -%s ${d#/proc/}; n=$((n+1)); fi
done; echo $n`, sub, sig)
}

// memoryOf is a guest script that prints the resident and proportional
// set sizes and the CPU clock ticks of the "mb-agent SUBCOMMAND" processes.
func memoryOf(sub string) string {
	return fmt.Sprintf(`for d in /proc/[0-9]*; do
  if tr '\0' ' ' < $d/cmdline 2>/dev/null | grep -q '^mb-agent %s '; then
    grep VmRSS $d/status; grep '^Pss:' $d/smaps_rollup; echo "utime stime: $(cut -d' ' -f14,15 $d/stat)"
  fi
done`, sub)
}

// TestVMReporters boots one mini guest whose kernel command line starts
// both reporters (mb.heartbeat=, mb.register=) against a real monitor on
// the host. Heartbeat: the host appears with source hbc, its plugin data
// and an RTT; SIGTERM makes it stopped (and init does not restart it); a
// manual start brings it up; SIGKILL makes it overdue with a reachability
// alert, and a new start recovers both. Register: the host appears with
// source tracker and the guest's address; switched to another interface
// with another address, the change is kept in the host's address history.
func TestVMReporters(t *testing.T) {
	m := miniImage(t)
	mon := startMonitor(t)
	vm := bootMini(t, m, fmt.Sprintf("mb.hostname=fleet1 mb.heartbeat=10.0.2.2:%s mb.heartbeat_interval=1 mb.heartbeat_name=fleet1-hb mb.register=http://10.0.2.2:%s mb.register_interval=1",
		mon.udpPort, mon.httpPort))
	vm.waitSerial(t, ReadyLine)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	q, err := dialQGA(ctx, vm.agentSock)
	if err != nil {
		t.Fatal(err)
	}
	defer q.close()
	if err := q.sync(ctx); err != nil {
		t.Fatalf("agent did not answer: %v; console:\n%s", err, tail(vm.serialLog()))
	}
	startHB := fmt.Sprintf("mb-agent heartbeat -b -n fleet1-hb --interval 1 10.0.2.2:%s </dev/null >/dev/null 2>&1 &", mon.udpPort)
	reach := func(want ...string) func(hostView) bool {
		return func(h hostView) bool { return slices.Contains(want, h.Reachability) }
	}

	t.Run("heartbeat", func(t *testing.T) {
		h := mon.waitHost(t, vm, "fleet1-hb", "up from hbc with plugin data and an RTT", func(h hostView) bool {
			have := 0
			for _, p := range []string{"os_info", "cpu_monitor", "memory_monitor", "disk_monitor", "network_monitor"} {
				if slices.Contains(h.Plugins, p) {
					have++
				}
			}
			return h.Source == "hbc" && h.Reachability == "up" && h.RTT != nil && *h.RTT > 0 && have == 5
		})
		t.Logf("the monitor shows %+v, RTT %.2f ms", h, *h.RTT)
		var plugins struct {
			Plugins map[string]struct {
				Data map[string]any `json:"data"`
			} `json:"plugins"`
		}
		mon.get(t, "/api/0/hosts/fleet1-hb/plugins", &plugins)
		if osi := plugins.Plugins["os_info"].Data; osi["os"] != "Linux" || osi["kernel"] == nil {
			t.Errorf("os_info as the monitor has it: %v", osi)
		}
		t.Logf("heartbeat reporter in the guest:\n%s", guestSh(t, ctx, q, memoryOf("heartbeat")))

		// SIGTERM: stopped, not overdue; init leaves it stopped.
		if n := strings.TrimSpace(guestSh(t, ctx, q, signalReporter("heartbeat", "TERM"))); n != "1" {
			t.Fatalf("%s heartbeat reporters signalled, want 1", n)
		}
		mon.waitHost(t, vm, "fleet1-hb", "stopped", reach("stopped"))
		vm.waitSerial(t, `reporter stopped cleanly; not restarting it" component=mb-agent-init reporter=heartbeat`)

		// Started by hand: up again. SIGKILL: no shutdown message, so
		// overdue (down, past 3 intervals) and a reachability alert.
		guestSh(t, ctx, q, startHB)
		mon.waitHost(t, vm, "fleet1-hb", "up after a manual start", reach("up"))
		if n := strings.TrimSpace(guestSh(t, ctx, q, signalReporter("heartbeat", "KILL"))); n != "1" {
			t.Fatalf("%s heartbeat reporters killed, want 1", n)
		}
		h = mon.waitHost(t, vm, "fleet1-hb", "overdue after SIGKILL", reach("overdue", "down"))
		t.Logf("after SIGKILL: %s", h.Reachability)
		mon.waitReachAlert(t, "fleet1-hb", "CRITICAL")
		guestSh(t, ctx, q, startHB)
		mon.waitHost(t, vm, "fleet1-hb", "up again after a new start", reach("up"))
		mon.waitReachAlert(t, "fleet1-hb", "OK")
	})

	t.Run("register", func(t *testing.T) {
		h := mon.waitHost(t, vm, "fleet1", "up from the tracker with the guest's address", func(h hostView) bool {
			return h.Source == "tracker" && h.Reachability == "up" && h.Address == "10.0.2.15"
		})
		t.Logf("the monitor shows %+v", h)
		var vms []struct {
			Hostname  string `json:"hostname"`
			IPAddress string `json:"ip_address"`
			Interface string `json:"interface"`
			Status    string `json:"status"`
		}
		mon.get(t, "/api/vms", &vms)
		if len(vms) != 1 || vms[0].Hostname != "fleet1" || vms[0].Interface != "eth0" || vms[0].Status != "online" {
			t.Errorf("/api/vms: %+v", vms)
		}
		t.Logf("register reporter in the guest:\n%s", guestSh(t, ctx, q, memoryOf("register")))

		// Stop the command line's reporter, give lo a second address and
		// register that interface instead.
		if n := strings.TrimSpace(guestSh(t, ctx, q, signalReporter("register", "TERM"))); n != "1" {
			t.Fatalf("%s register reporters signalled, want 1", n)
		}
		vm.waitSerial(t, `reporter stopped cleanly; not restarting it" component=mb-agent-init reporter=register`)
		guestSh(t, ctx, q, fmt.Sprintf("ip addr add 192.168.77.7/32 dev lo && mb-agent register --api http://10.0.2.2:%s --interface lo --interval 1 </dev/null >/dev/null 2>&1 &", mon.httpPort))
		mon.waitHost(t, vm, "fleet1", "at the new address", func(h hostView) bool { return h.Address == "192.168.77.7" })
		var info struct {
			Addresses []struct {
				Address string `json:"address"`
			} `json:"addresses"`
		}
		mon.get(t, "/api/0/hosts/fleet1/info", &info)
		var addrs []string
		for _, a := range info.Addresses {
			addrs = append(addrs, a.Address)
		}
		if !slices.Contains(addrs, "10.0.2.15") || !slices.Contains(addrs, "192.168.77.7") {
			t.Errorf("address history %v, want 10.0.2.15 and 192.168.77.7", addrs)
		}
	})
}

//go:build linux

package guestinit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/internal/hbcwire"
)

// reportWait bounds the waits for what the guest sends: generous, for a
// loaded machine under TCG.
const reportWait = 2 * time.Minute

// hbReceiver is a UDP heartbeat receiver on the host's loopback, which the
// guest reaches as 10.0.2.2 through QEMU's user network. It ACKs every HTB.
type hbReceiver struct {
	conn *net.UDPConn
	in   chan *hbcwire.Message
}

func newHBReceiver(t *testing.T) *hbReceiver {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &hbReceiver{conn: conn, in: make(chan *hbcwire.Message, 10000)}
	done := make(chan struct{})
	t.Cleanup(func() { conn.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, hbcwire.MaxDatagram+1)
		var dec hbcwire.Decoder
		for {
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			m, err := dec.Decode(buf[:n])
			if err != nil {
				t.Errorf("undecodable datagram from the guest: %v", err)
				continue
			}
			select {
			case r.in <- m:
			default:
			}
			if m.ID == hbcwire.HTB {
				ack := hbcwire.New(hbcwire.ACK)
				for _, k := range []string{"timestamp", "seq"} {
					if v, ok := m.Get(k); ok {
						ack.Fields = append(ack.Fields, hbcwire.Field{Key: k, Value: v})
					}
				}
				if b, err := hbcwire.Encode(ack, hbcwire.EncodeOptions{}); err == nil {
					_, _ = conn.WriteToUDP(b, from)
				}
			}
		}
	}()
	return r
}

func (r *hbReceiver) port() int { return r.conn.LocalAddr().(*net.UDPAddr).Port }

// next waits for a message that matches.
func (r *hbReceiver) next(t *testing.T, vm *testVM, what string, match func(*hbcwire.Message) bool) *hbcwire.Message {
	t.Helper()
	deadline := time.After(reportWait)
	for {
		select {
		case m := <-r.in:
			if match(m) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %s from the guest within %s; console:\n%s", what, reportWait, tail(vm.serialLog()))
		}
	}
}

// drain forgets what was received so far.
func (r *hbReceiver) drain() {
	for {
		select {
		case <-r.in:
		default:
			return
		}
	}
}

// trackerReceiver is a VM Tracker registration server on the host's
// loopback.
type trackerReceiver struct {
	url string
	in  chan map[string]string
}

func newTrackerReceiver(t *testing.T) *trackerReceiver {
	t.Helper()
	r := &trackerReceiver{in: make(chan map[string]string, 10000)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var m map[string]string
		if req.Method != http.MethodPost || req.URL.Path != "/api/register" || req.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &m) != nil {
			t.Errorf("not a tracker registration: %s %s %q", req.Method, req.URL.Path, body)
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		select {
		case r.in <- m:
		default:
		}
		_, _ = w.Write([]byte(`{"status":"registered","timestamp":"` + time.Now().UTC().Format(time.RFC3339) + `"}`))
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

func (r *trackerReceiver) port() string { return r.url[strings.LastIndex(r.url, ":")+1:] }

func (r *trackerReceiver) next(t *testing.T, vm *testVM, what string, match func(map[string]string) bool) map[string]string {
	t.Helper()
	deadline := time.After(reportWait)
	for {
		select {
		case m := <-r.in:
			if match(m) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %s from the guest within %s; console:\n%s", what, reportWait, tail(vm.serialLog()))
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

// signalReporter sends sig to the guest's mb-agent processes whose command
// line starts with "mb-agent SUBCOMMAND".
func signalReporter(sub, sig string) string {
	return fmt.Sprintf(`n=0; for d in /proc/[0-9]*; do
  if tr '\0' ' ' < $d/cmdline 2>/dev/null | grep -q '^mb-agent %s '; then kill -%s ${d#/proc/}; n=$((n+1)); fi
done; echo $n`, sub, sig)
}

// memoryOf prints the resident and proportional set sizes (kB) of the
// guest's "mb-agent SUBCOMMAND" processes.
func memoryOf(sub string) string {
	return fmt.Sprintf(`for d in /proc/[0-9]*; do
  if tr '\0' ' ' < $d/cmdline 2>/dev/null | grep -q '^mb-agent %s '; then
    grep VmRSS $d/status; grep '^Pss:' $d/smaps_rollup; cut -d' ' -f14,15 $d/stat
  fi
done`, sub)
}

// TestVMReporters boots one mini guest with mb.heartbeat= and mb.register=
// on its command line and checks both reporters against receivers on the
// host (reached as 10.0.2.2): the heartbeats with plugin data and RTT, a
// clean stop with SIGTERM (a shutdown heartbeat, not restarted), a manual
// start, a SIGKILL (no shutdown marker) and a restart; registrations, and
// an address change when register is switched to another interface.
func TestVMReporters(t *testing.T) {
	m := miniImage(t)
	hb := newHBReceiver(t)
	tr := newTrackerReceiver(t)
	vm := bootMini(t, m, fmt.Sprintf("mb.hostname=fleet1 mb.heartbeat=10.0.2.2:%d mb.heartbeat_interval=1 mb.register=http://10.0.2.2:%s mb.register_interval=1",
		hb.port(), tr.port()))
	vm.waitSerial(t, ReadyLine)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	q, err := dialQGA(ctx, vm.agentSock)
	if err != nil {
		t.Fatal(err)
	}
	defer q.close()
	if err := q.sync(ctx); err != nil {
		t.Fatalf("agent did not answer: %v; console:\n%s", err, tail(vm.serialLog()))
	}
	isHTB := func(m *hbcwire.Message) bool { return m.ID == hbcwire.HTB && m.String("name") == "fleet1" }
	plugin := func(name string) func(*hbcwire.Message) bool {
		return func(m *hbcwire.Message) bool { return m.ID == hbcwire.PLG && m.String("plugin") == name }
	}

	t.Run("heartbeat", func(t *testing.T) {
		boot := hb.next(t, vm, "the boot heartbeat", isHTB)
		if !boot.Bool("boot") {
			t.Errorf("first heartbeat without boot=1: %+v", boot.Fields)
		}
		osi := hb.next(t, vm, "os_info", plugin("os_info"))
		if osi.String("os") != "Linux" || osi.String("kernel") == "" {
			t.Errorf("os_info %+v", osi.Fields)
		}
		for _, p := range []string{"cpu_monitor", "memory_monitor", "disk_monitor", "network_monitor"} {
			hb.next(t, vm, p, plugin(p))
		}
		withRTT := hb.next(t, vm, "a heartbeat with the RTT", func(m *hbcwire.Message) bool {
			_, ok := m.Get("rtt")
			return isHTB(m) && ok
		})
		rtt, _ := withRTT.Float("rtt")
		t.Logf("RTT guest → host → guest %.3f ms", rtt*1000)
		t.Logf("heartbeat reporter memory (kB) and CPU ticks (utime stime):\n%s", guestSh(t, ctx, q, memoryOf("heartbeat")))

		// SIGTERM: a shutdown heartbeat, and init does not restart it.
		if n := strings.TrimSpace(guestSh(t, ctx, q, signalReporter("heartbeat", "TERM"))); n != "1" {
			t.Fatalf("%s heartbeat reporters signalled, want 1", n)
		}
		hb.next(t, vm, "the shutdown heartbeat", func(m *hbcwire.Message) bool { return isHTB(m) && m.Bool("shutdown") })
		vm.waitSerial(t, `reporter stopped cleanly; not restarting it" component=mb-agent-init reporter=heartbeat`)

		// Started by hand; then SIGKILL leaves no shutdown marker.
		hb.drain()
		guestSh(t, ctx, q, fmt.Sprintf("mb-agent heartbeat -b --interval 1 10.0.2.2:%d </dev/null >/dev/null 2>&1 &", hb.port()))
		if again := hb.next(t, vm, "the boot heartbeat of the manual start", isHTB); !again.Bool("boot") {
			t.Errorf("manual start: first heartbeat without boot=1: %+v", again.Fields)
		}
		if n := strings.TrimSpace(guestSh(t, ctx, q, signalReporter("heartbeat", "KILL"))); n != "1" {
			t.Fatalf("%s heartbeat reporters killed, want 1", n)
		}
		guestSh(t, ctx, q, fmt.Sprintf("mb-agent heartbeat -b --interval 1 10.0.2.2:%d </dev/null >/dev/null 2>&1 &", hb.port()))
		for {
			m := hb.next(t, vm, "the boot heartbeat after the SIGKILL", isHTB)
			if m.Bool("shutdown") {
				t.Fatal("a shutdown heartbeat after SIGKILL")
			}
			if m.Bool("boot") {
				break
			}
		}
	})

	t.Run("register", func(t *testing.T) {
		first := tr.next(t, vm, "a registration", func(m map[string]string) bool { return m["hostname"] == "fleet1" })
		if first["ip_address"] != "10.0.2.15" || first["interface"] != "eth0" {
			t.Errorf("registration %v, want 10.0.2.15 on eth0", first)
		}
		t.Logf("register reporter memory (kB) and CPU ticks (utime stime):\n%s", guestSh(t, ctx, q, memoryOf("register")))
		if n := strings.TrimSpace(guestSh(t, ctx, q, signalReporter("register", "TERM"))); n != "1" {
			t.Fatalf("%s register reporters signalled, want 1", n)
		}
		vm.waitSerial(t, `reporter stopped cleanly; not restarting it" component=mb-agent-init reporter=register`)
		// A second address, on another interface, and register switched
		// to it.
		guestSh(t, ctx, q, fmt.Sprintf("ip addr add 192.168.77.7/32 dev lo && mb-agent register --api http://10.0.2.2:%s --interface lo --interval 1 </dev/null >/dev/null 2>&1 &", tr.port()))
		moved := tr.next(t, vm, "a registration with the new address", func(m map[string]string) bool { return m["ip_address"] == "192.168.77.7" })
		if moved["hostname"] != "fleet1" || moved["interface"] != "lo" {
			t.Errorf("registration after the switch %v", moved)
		}
	})
}

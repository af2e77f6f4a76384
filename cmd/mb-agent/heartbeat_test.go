package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mbvm/mb/internal/hbcwire"
)

// udpServer answers every HTB with an ACK and passes on what it gets.
func udpServer(t *testing.T) (port int, in <-chan *hbcwire.Message) {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *hbcwire.Message, 1000)
	done := make(chan struct{})
	t.Cleanup(func() { conn.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 70000)
		for {
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			m, err := hbcwire.Decode(buf[:n])
			if err != nil {
				continue
			}
			// Passed on before the ACK, so a client that exits on the ACK
			// has its message in the channel already.
			select {
			case ch <- m:
			default:
			}
			if m.ID == hbcwire.HTB {
				ts, _ := m.Get("timestamp")
				ack := hbcwire.New(hbcwire.ACK)
				ack.Fields = append(ack.Fields, hbcwire.Field{Key: "timestamp", Value: ts})
				if b, err := hbcwire.Encode(ack, hbcwire.EncodeOptions{}); err == nil {
					_, _ = conn.WriteToUDP(b, from)
				}
			}
		}
	}()
	return conn.LocalAddr().(*net.UDPAddr).Port, ch
}

func nextMsg(t *testing.T, c *child, in <-chan *hbcwire.Message, what string, match func(*hbcwire.Message) bool) *hbcwire.Message {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		select {
		case m := <-in:
			if match(m) {
				return m
			}
		case <-c.done:
			for {
				select {
				case m := <-in:
					if match(m) {
						return m
					}
				default:
					t.Fatalf("mb-agent exited (%v) before %s:\n%s", c.err, what, c.log())
				}
			}
		case <-deadline:
			t.Fatalf("no %s within 2 minutes:\n%s", what, c.log())
		}
	}
}

// TestHeartbeatProcess runs hbc's command line: flags after the server,
// a JSON config, boot and shutdown messages, plugin data, SIGTERM.
func TestHeartbeatProcess(t *testing.T) {
	port, in := udpServer(t)
	cfg := filepath.Join(t.TempDir(), "hbc.json")
	if err := os.WriteFile(cfg, []byte(`{"interval": 0.05, "plugins": {"memory_monitor": {"interval": 0.05}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startChild(t, "heartbeat", fmt.Sprintf("127.0.0.1:%d", port), "-b", "-c", cfg, "-n", "vm-one")
	boot := nextMsg(t, c, in, "the boot heartbeat", func(m *hbcwire.Message) bool { return m.ID == hbcwire.HTB })
	if !boot.Bool("boot") || boot.String("name") != "vm-one" {
		t.Errorf("first HTB %+v", boot.Fields)
	}
	nextMsg(t, c, in, "memory_monitor data", func(m *hbcwire.Message) bool {
		return m.ID == hbcwire.PLG && m.String("plugin") == "memory_monitor"
	})
	nextMsg(t, c, in, "an HTB with the RTT", func(m *hbcwire.Message) bool {
		_, ok := m.Get("rtt")
		return m.ID == hbcwire.HTB && ok
	})
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	nextMsgOrExit(t, c, in)
	if code := c.wait(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, c.log())
	}
}

// nextMsgOrExit waits for the shutdown HTB, which is sent just before the
// process exits.
func nextMsgOrExit(t *testing.T, c *child, in <-chan *hbcwire.Message) {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		select {
		case m := <-in:
			if m.ID == hbcwire.HTB && m.Bool("shutdown") {
				return
			}
		case <-deadline:
			t.Fatalf("no shutdown heartbeat within 2 minutes:\n%s", c.log())
		}
	}
}

func TestHeartbeatOneOffMessage(t *testing.T) {
	port, in := udpServer(t)
	home := t.TempDir() // no ~/.hbc.json there
	c := startChildEnv(t, []string{"HOME=" + home}, "heartbeat", "-4", "-m", "disk swap at 10:00", fmt.Sprintf("localhost:%d", port))
	if code := c.wait(t); code != 0 {
		t.Fatalf("exit %d:\n%s", code, c.log())
	}
	m := nextMsg(t, c, in, "the message", func(m *hbcwire.Message) bool { return m.ID == hbcwire.HTB })
	if m.String("message") != "disk swap at 10:00" {
		t.Errorf("message %q", m.String("message"))
	}
}

func TestHeartbeatRejectsBadUse(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	t.Setenv("HOME", t.TempDir())
	t.Setenv("MB_HEARTBEAT_KEY", "")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-b"}, "name at least one server"},
		{[]string{"-4", "-6", "h"}, "exclude each other"},
		{[]string{"--allow-commands", "h"}, "hmac_key"},
		{[]string{"-c", missing, "h"}, "does not exist"},
		{[]string{"--no-such", "h"}, "unknown flag"},
		{[]string{"h:99999"}, "port"},
	} {
		var errb strings.Builder
		if got := runHeartbeat(c.args, &errb); got != 2 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("heartbeat %q: exit %d, stderr %q; want 2 and %q", c.args, got, errb.String(), c.want)
		}
	}
}

// TestHeartbeatDaemon: -d returns at once and leaves a detached process
// that sends the heartbeats.
func TestHeartbeatDaemon(t *testing.T) {
	port, in := udpServer(t)
	cfg := filepath.Join(t.TempDir(), "hbc.json")
	if err := os.WriteFile(cfg, []byte(`{"interval": 0.05}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startChild(t, "heartbeat", "-d", "-c", cfg, "-n", "bg", fmt.Sprintf("127.0.0.1:%d", port))
	if code := c.wait(t); code != 0 {
		t.Fatalf("exit %d:\n%s", code, c.log())
	}
	var pid int
	i := strings.Index(c.log(), "PID ")
	if i < 0 {
		t.Fatalf("no PID in %q", c.log())
	}
	if _, err := fmt.Sscanf(c.log()[i:], "PID %d", &pid); err != nil || pid <= 0 {
		t.Fatalf("no PID in %q", c.log())
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	deadline := time.After(2 * time.Minute)
	for {
		select {
		case m := <-in:
			if m.ID == hbcwire.HTB && m.String("name") == "bg" {
				return
			}
		case <-deadline:
			t.Fatal("the background process sent no heartbeat within 2 minutes")
		}
	}
}

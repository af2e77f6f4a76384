package applevirt

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/mbvm/mb/agent/vsockrelay"
	"github.com/mbvm/mb/vm/spec"
	"github.com/mbvm/mb/vmhost"
)

// guestServer is a TCP server standing in for a guest service: it answers
// each connection with its name and echoes one line upper-cased.
func guestServer(t *testing.T, name string) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, name+"\n")
				line, _ := bufio.NewReader(c).ReadString('\n')
				io.WriteString(c, strings.ToUpper(line))
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// guestRelay runs the guest's relay (the same vsockrelay.Serve mb-agent
// runs) on a unix socket standing in for the vsock port, and returns a
// DialVsock for the fake machine that reaches it on the relay port only.
func guestRelay(t *testing.T) func(ctx context.Context, port uint32) (net.Conn, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "relay.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); vsockrelay.Serve(ctx, l, vsockrelay.Options{}) }()
	t.Cleanup(func() { cancel(); <-done })
	return func(ctx context.Context, port uint32) (net.Conn, error) {
		if port != RelayVsockPort {
			return nil, errors.New("fake: nothing listens on that vsock port")
		}
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
}

// talk connects to a forwarded host port, reads the greeting and checks
// the echo.
func talk(t *testing.T, port int) string {
	t.Helper()
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	greet, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read greeting through port %d: %v", port, err)
	}
	io.WriteString(c, "ping\n")
	if echo, err := r.ReadString('\n'); err != nil || echo != "PING\n" {
		t.Fatalf("echo through port %d: %q, %v", port, echo, err)
	}
	return strings.TrimSpace(greet)
}

func freeHostPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestForwardsThroughRelay boots a fake machine whose vsock reaches a real
// guest relay, and checks that a forward reaches the guest port through
// it; the SSH listener is bound before boot and its port reported.
func TestForwardsThroughRelay(t *testing.T) {
	web := guestServer(t, "web")
	m := newFakeMachine()
	m.dial = guestRelay(t)
	host := freeHostPort(t)
	cfg := &Config{Name: "vm", MAC: MACFromName("vm"), RelayPort: RelayVsockPort, AgentPort: AgentVsockPort,
		Forwards: []spec.Forward{{Host: host, Guest: web, Proto: "tcp"}}}
	var bound bool
	newM := func(*Config) (machine, error) {
		// Before boot, the ports are already bound.
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(host)))
		if err == nil {
			bound = true
			c.Close()
		}
		return m, nil
	}
	c, err := startConfig(context.Background(), cfg, newM, testLogger(t), func(net.HardwareAddr) (net.IP, error) {
		return nil, errors.New("no leases in this test")
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { c.ForceStop(context.Background()); c.fwd.wait() }()
	if !bound {
		t.Fatal("the forward's host port was not bound before the machine was created")
	}
	if c.SSHPort() == 0 {
		t.Fatal("no SSH port")
	}
	if got := talk(t, host); got != "web" {
		t.Fatalf("forward reached %q, want web", got)
	}
	// Nothing listens on the guest's port 22 here: the connection is
	// refused by the relay and closed.
	s, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(c.SSHPort())))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(s); len(b) != 0 {
		t.Fatalf("ssh port without a guest sshd gave %q, want the connection closed", b)
	}
	s.Close()
}

// TestForwardsThroughLease: without a relay in the guest, the forward goes
// to the guest's NAT address from the DHCP leases.
func TestForwardsThroughLease(t *testing.T) {
	web := guestServer(t, "web-nat")
	m := newFakeMachine() // no vsock relay
	host := freeHostPort(t)
	cfg := &Config{Name: "vm", MAC: MACFromName("vm"), RelayPort: RelayVsockPort,
		Forwards: []spec.Forward{{Host: host, Guest: web, Proto: "tcp"}}}
	asked := make(chan net.HardwareAddr, 1)
	c, err := startConfig(context.Background(), cfg, func(*Config) (machine, error) { return m, nil }, testLogger(t),
		func(mac net.HardwareAddr) (net.IP, error) { asked <- mac; return net.IPv4(127, 0, 0, 1), nil })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { c.ForceStop(context.Background()); c.fwd.wait() }()
	if got := talk(t, host); got != "web-nat" {
		t.Fatalf("forward reached %q, want web-nat", got)
	}
	if mac := <-asked; mac.String() != cfg.MAC.String() {
		t.Fatalf("lease looked up for %s, want the VM's MAC %s", mac, cfg.MAC)
	}
}

// TestForwardPortTaken: a host port in use fails the start before the
// machine exists, naming the port.
func TestForwardPortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	created := false
	cfg := &Config{Name: "vm", Forwards: []spec.Forward{{Host: port, Guest: 80, Proto: "tcp"}}}
	_, err = startConfig(context.Background(), cfg, func(*Config) (machine, error) { created = true; return newFakeMachine(), nil }, testLogger(t), nil)
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:"+strconv.Itoa(port)) || created {
		t.Fatalf("start with a taken port: %v (machine created: %v)", err, created)
	}
}

// TestForwardsClosedWithVM: once the VM is gone, the host ports are
// released.
func TestForwardsClosedWithVM(t *testing.T) {
	m := newFakeMachine()
	cfg := &Config{Name: "vm", MAC: MACFromName("vm")}
	c, err := startConfig(context.Background(), cfg, func(*Config) (machine, error) { return m, nil }, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	port := c.SSHPort()
	if _, err := c.StopMode(context.Background(), 0, vmhost.ModeKill); err != nil {
		t.Fatal(err)
	}
	c.fwd.wait()
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("ssh port %d still bound after the VM is gone: %v", port, err)
	}
	l.Close()
}

// TestStartNeedsMacOS: off macOS, Start refuses at once and says why.
func TestStartNeedsMacOS(t *testing.T) {
	if runtime.GOOS == "darwin" {
		t.Logf("on macOS Start can run VMs; the refusal is for other systems")
		return
	}
	_, err := Start(context.Background(), Options{Dir: t.TempDir(), Spec: &spec.Spec{Name: "vm", Backend: "applevirt"}})
	if err == nil || !strings.Contains(err.Error(), "needs macOS") || !strings.Contains(err.Error(), "backend: qemu") {
		t.Fatalf("Start on %s: %v", runtime.GOOS, err)
	}
}

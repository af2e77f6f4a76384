package sshkeys

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/internal/testenv"
)

func TestArgv(t *testing.T) {
	tests := []struct {
		name string
		t    Target
		cmd  []string
		want string
	}{
		{"login", Target{Name: "deb", Dir: "/h/vms/deb", Port: 2222}, nil,
			"ssh -i /h/vms/deb/id_ed25519 -p 2222 -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/h/vms/deb/known_hosts -o HostKeyAlias=deb -- mb@127.0.0.1"},
		{"command", Target{Name: "deb", Dir: "/h/vms/deb", Port: 40000, User: "root"}, []string{"uname", "-a"},
			"ssh -i /h/vms/deb/id_ed25519 -p 40000 -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/h/vms/deb/known_hosts -o HostKeyAlias=deb -- root@127.0.0.1 uname -a"},
		{"dash command", Target{Name: "a", Dir: "/d", Port: 1}, []string{"-v"},
			"ssh -i /d/id_ed25519 -p 1 -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/d/known_hosts -o HostKeyAlias=a -- mb@127.0.0.1 -v"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(Argv(tc.t, tc.cmd), " "); got != tc.want {
				t.Errorf("Argv =\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestConfigBlock(t *testing.T) {
	got := ConfigBlock(Target{Name: "deb", Dir: "/my vms/deb", Port: 2222})
	want := `Host deb
  HostName 127.0.0.1
  Port 2222
  User mb
  IdentityFile "/my vms/deb/id_ed25519"
  IdentitiesOnly yes
  StrictHostKeyChecking yes
  UserKnownHostsFile "/my vms/deb/known_hosts"
  HostKeyAlias deb
`
	if got != want {
		t.Errorf("ConfigBlock =\n%s\nwant\n%s", got, want)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestProbeVerifiesHostKeyAndClientKey(t *testing.T) {
	k, err := Ensure(t.TempDir(), "vm")
	if err != nil {
		t.Fatal(err)
	}
	other, err := Ensure(t.TempDir(), "other")
	if err != nil {
		t.Fatal(err)
	}
	otherHost, err := sshSigner(other.HostPrivate)
	if err != nil {
		t.Fatal(err)
	}
	hostSigner, err := sshSigner(k.HostPrivate)
	if err != nil {
		t.Fatal(err)
	}

	good := startServer(t, hostSigner, k.ClientSigner().PublicKey())
	if err := Probe(ctxT(t), k, "", good.Port); err != nil {
		t.Errorf("probe of the right server: %v", err)
	}

	if err := ProbeVM(ctxT(t), k.Dir, "", good.Port); err != nil {
		t.Errorf("ProbeVM of the right server: %v", err)
	}
	if err := ProbeVM(ctxT(t), t.TempDir(), "", good.Port); err == nil {
		t.Error("ProbeVM without keys succeeded")
	}

	imposter := startServer(t, otherHost, k.ClientSigner().PublicKey())
	err = Probe(ctxT(t), k, "", imposter.Port)
	if !errors.Is(err, ErrHostKeyMismatch) {
		t.Errorf("probe of a server with another host key: err = %v, want ErrHostKeyMismatch", err)
	}

	noAuth := startServer(t, hostSigner, other.ClientSigner().PublicKey())
	if err := Probe(ctxT(t), k, "", noAuth.Port); err == nil {
		t.Error("probe succeeded though the server refuses the client key")
	}
}

func TestProbeHonoursContext(t *testing.T) {
	k, err := Ensure(t.TempDir(), "vm")
	if err != nil {
		t.Fatal(err)
	}
	// A server that accepts and never speaks: the handshake must end with
	// the context.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = Probe(ctx, k, "", ln.Addr().(*net.TCPAddr).Port)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want a deadline error", err)
	}
}

func TestWaitReadyRetriesUntilServerUp(t *testing.T) {
	k, err := Ensure(t.TempDir(), "vm")
	if err != nil {
		t.Fatal(err)
	}
	hostSigner, err := sshSigner(k.HostPrivate)
	if err != nil {
		t.Fatal(err)
	}
	// Reserve a port, free it, and start the server there a little later.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	done := make(chan error, 1)
	go func() { done <- WaitReady(ctxT(t), k, "", port, 50*time.Millisecond) }()
	time.Sleep(200 * time.Millisecond)
	srv := startServerOn(t, "127.0.0.1:"+itoa(port), hostSigner, k.ClientSigner().PublicKey())
	_ = srv
	if err := <-done; err != nil {
		t.Fatalf("WaitReady: %v", err)
	}

	// With nothing listening, WaitReady ends with its context and says why.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	srv.ln.Close()
	err = WaitReady(ctx, k, "", port, 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "last attempt") {
		t.Errorf("err = %v, want a timeout naming the last attempt", err)
	}
}

// TestArgvWithOpenSSH runs the real ssh client with Argv against a server
// presenting the injected host key: known_hosts, HostKeyAlias and the exit
// code pass through.
func TestArgvWithOpenSSH(t *testing.T) {
	sshBin := testenv.Tool(t, "ssh", "openssh-client")
	dir, k, srv := keyedServer(t)
	argv := Argv(Target{Name: "vm", Dir: dir, Port: srv.Port}, []string{"echo", "hi"})
	cmd := exec.CommandContext(ctxT(t), sshBin, append([]string{"-F", "/dev/null", "-o", "BatchMode=yes"}, argv[1:]...)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("ssh: err = %v, want exit code 3 (the remote command's)\n%s", err, out)
	}
	if !strings.Contains(string(out), "ran: echo hi") {
		t.Errorf("output %q lacks the remote command's output", out)
	}

	// The same command against a server with another host key is refused.
	other, err := Ensure(t.TempDir(), "other")
	if err != nil {
		t.Fatal(err)
	}
	otherHost, err := sshSigner(other.HostPrivate)
	if err != nil {
		t.Fatal(err)
	}
	bad := startServer(t, otherHost, k.ClientSigner().PublicKey())
	argv = Argv(Target{Name: "vm", Dir: dir, Port: bad.Port}, []string{"true"})
	out, err = exec.CommandContext(ctxT(t), sshBin, append([]string{"-F", "/dev/null", "-o", "BatchMode=yes"}, argv[1:]...)...).CombinedOutput()
	if !errors.As(err, &ee) || ee.ExitCode() != 255 || !strings.Contains(string(out), "HOST IDENTIFICATION HAS CHANGED") {
		t.Errorf("ssh to a server with another host key: err = %v, want exit 255 and a host key warning\n%s", err, out)
	}
}

package daemon

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mbvm/mb/internal/testenv"
)

// A client of another uid is refused even when the socket's file mode
// would let it in (the SO_PEERCRED check is the second wall).
func TestPeerOfAnotherUIDRefused(t *testing.T) {
	testenv.Root(t, "running a client as another uid")
	h, err := os.MkdirTemp("/tmp", "mbd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(h)
	d := New(Config{Home: h, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	sock := SocketPath(h)
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "unix", sock)
	}}, Timeout: time.Minute}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := client.Get("http://mb/v1/daemon")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("own uid: status %d", resp.StatusCode)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon never answered: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Open the file permissions, as a careless user might.
	if err := os.Chmod(h, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	// Run this test binary as nobody, as the client.
	binDir, err := os.MkdirTemp("/tmp", "mbp")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(binDir)
	exe := filepath.Join(binDir, "daemon.test")
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "MB_PEER_SOCKET="+sock)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client as nobody: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "PEER-RESULT refused") {
		t.Errorf("a client of uid 65534 was not refused:\n%s", out)
	}
}

// peerClient asks the daemon for its status over sock and prints whether it
// was answered or refused.
func peerClient(sock string) {
	c, err := net.DialTimeout("unix", sock, 30*time.Second)
	if err != nil {
		fmt.Printf("PEER-RESULT dial failed: %v\n", err)
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	_, _ = io.WriteString(c, "GET /v1/daemon HTTP/1.1\r\nHost: mb\r\n\r\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/") {
		fmt.Printf("PEER-RESULT refused (%v)\n", err)
		return
	}
	fmt.Printf("PEER-RESULT answered: %s\n", line)
}

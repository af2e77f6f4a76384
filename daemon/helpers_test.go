package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mbvm/mb/daemon/api"
)

var (
	vmhostOnce sync.Once
	vmhostPath string
	vmhostErr  error
)

func TestMain(m *testing.M) {
	// The test binary started as the client half of
	// TestPeerOfAnotherUIDRefused, as another uid.
	if sock := os.Getenv("MB_PEER_SOCKET"); sock != "" {
		peerClient(sock)
		os.Exit(0)
	}
	code := m.Run()
	if vmhostPath != "" {
		os.RemoveAll(filepath.Dir(vmhostPath))
	}
	os.Exit(code)
}

// testVMHost builds cmd/vmhost once for the package's tests.
func testVMHost(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs vmhost processes")
	}
	vmhostOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mbd-bin")
		if err != nil {
			vmhostErr = err
			return
		}
		p := filepath.Join(dir, "vmhost")
		if out, err := exec.Command("go", "build", "-o", p, "github.com/mbvm/mb/cmd/vmhost").CombinedOutput(); err != nil {
			vmhostErr = &buildError{err: err, out: string(out)}
			return
		}
		vmhostPath = p
	})
	if vmhostErr != nil {
		t.Fatal(vmhostErr)
	}
	return vmhostPath
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return "build vmhost: " + e.err.Error() + "\n" + e.out }

// testDaemon is a daemon run in-process on a temporary $MB_HOME.
type testDaemon struct {
	d    *Daemon
	home string
	c    *api.Client
	// stop ends the daemon (stopping its VMs) and waits for Run to return.
	stop func()
	// exit ends the daemon, leaving its VMs running, and waits for Run.
	exit func()
}

// startTestDaemon runs a daemon on home ("" for a new temporary one) with
// the real vmhost binary; mod may adjust the configuration first.
func startTestDaemon(t *testing.T, home string, mod func(*Config)) *testDaemon {
	t.Helper()
	bin := testVMHost(t)
	if home == "" {
		var err error
		if home, err = os.MkdirTemp("/tmp", "mbd"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(home) })
	}
	cfg := Config{Home: home, VMHost: bin, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Restart: Backoff{Base: 100 * time.Millisecond, Max: 400 * time.Millisecond}}
	if mod != nil {
		mod(&cfg)
	}
	d := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	c := newTestClient(t, home)
	var once sync.Once
	td := &testDaemon{d: d, home: home, c: c}
	end := func(stopVMs bool) {
		once.Do(func() {
			sctx, scancel := context.WithTimeout(context.Background(), time.Minute)
			defer scancel()
			// A daemon at its connection cap refuses the stop as busy until
			// it notices that a test's follows have gone: ask again.
			for c.StopDaemon(sctx, stopVMs) != nil && sctx.Err() == nil {
				select {
				case <-done:
				case <-time.After(100 * time.Millisecond):
					continue
				}
				break
			}
			select {
			case <-done:
			case <-sctx.Done():
				t.Error("the daemon did not stop")
			}
			cancel()
		})
	}
	td.stop = func() { end(true) }
	td.exit = func() { end(false) }
	t.Cleanup(td.stop)
	return td
}

// ctx returns a context bounded for one test step.
func stepCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// rawCall calls the daemon's API with a raw body and returns the status
// and the decoded error reply (empty for a success).
func rawCall(t *testing.T, home, method, path string, body []byte) (int, api.Error) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", SocketPath(home))
	}}, Timeout: 2 * time.Minute}
	defer c.CloseIdleConnections()
	req, err := http.NewRequest(method, "http://mb"+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var e api.Error
	if resp.StatusCode >= 300 {
		data, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(data, &e); err != nil {
			t.Fatalf("%s %s: %s: error body %q is not JSON", method, path, resp.Status, data)
		}
	}
	return resp.StatusCode, e
}

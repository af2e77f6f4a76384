package fleet

import (
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mbvm/mb/internal/testenv"
	"github.com/mbvm/mb/monitor"
)

// rig is a fleet over a real engine, a real UDP socket and a real HTTP
// server, cleaned up with the test.
type rig struct {
	t   *testing.T
	eng *monitor.Engine
	f   *Fleet
	udp *net.UDPAddr
	srv *httptest.Server
	clk *testClock
}

// testClock is a settable clock shared by the engine and the fleet.
type testClock struct {
	mu  sync.Mutex
	now time.Time
	off bool // follow the real time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.off {
		return time.Now()
	}
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type rigOpt func(*Settings, *monitor.Settings, *Options)

// newRig starts a fleet; the clock is the real one unless fake is set.
func newRig(t *testing.T, s Settings, fake bool, opts ...rigOpt) *rig {
	t.Helper()
	clk := &testClock{now: time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC), off: !fake}
	ms := monitor.Settings{Interval: 20 * time.Second, Grace: 2 * time.Second}
	o := Options{Clock: clk.Now, AgentDir: t.TempDir()}
	if s.HeartbeatListen == "" {
		s.HeartbeatListen = "127.0.0.1:0"
	}
	for _, fn := range opts {
		fn(&s, &ms, &o)
	}
	eng, err := monitor.New(monitor.Options{Settings: ms, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	o.Engine = eng
	f, err := New(s, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx)
	}()
	srv := httptest.NewServer(f.Handler())
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-done
		f.Close()
	})
	r := &rig{t: t, eng: eng, f: f, srv: srv, clk: clk}
	if a := f.HeartbeatAddr(); a != nil {
		r.udp = a.(*net.UDPAddr)
	}
	return r
}

// waitFor polls cond for up to two minutes (generous: the machine is
// loaded), failing the test with what when it never holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *rig) host(name string) (monitor.HostInfo, bool) { return r.eng.Host(name) }

// python returns Debian's interpreter (where python3-websockets lives).
func python(t *testing.T) string {
	t.Helper()
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		testenv.Need(t, "/usr/bin/python3 is not installed (apt-get install python3)")
	}
	return py
}

// runPython runs a script with args and decodes its last stdout line as
// JSON into out.
func runPython(t *testing.T, script string, out any, args ...string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "client.py")
	if err := os.WriteFile(p, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python(t), append([]string{p}, args...)...)
	b, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("python client: %v\n%s\n%s", err, b, stderr)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("python client output %q: %v", b, err)
	}
}

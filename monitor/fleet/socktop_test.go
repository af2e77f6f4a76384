package fleet

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/agent/socktop"
	"github.com/mbvm/mb/monitor"
)

// pySocktop is a socktop-compatible agent written in the test with
// python3-websockets: it answers get_metrics and get_disks with
// gzip-compressed JSON in binary frames, and closes connections without
// its token right after the upgrade.
const pySocktop = `
import asyncio, gzip, json, sys
import websockets

TOKEN = sys.argv[1]
GIB = 2 ** 30

async def handler(ws, *args):
    if 'token=' + TOKEN not in ws.path:
        await ws.close()
        return
    n = 0
    async for msg in ws:
        if msg == 'get_metrics':
            n += 1
            m = {'cpu_total': 37.5, 'cpu_per_core': [30.0, 45.0], 'mem_total': 8 * GIB, 'mem_used': 2 * GIB,
                 'swap_total': 0, 'swap_used': 0, 'hostname': 'pi', 'cpu_temp_c': 51.25, 'disks': [],
                 'networks': [{'name': 'eth0', 'received': 1000 * n, 'transmitted': 500 * n},
                              {'name': 'lo', 'received': 1, 'transmitted': 1}],
                 'top_processes': [], 'gpus': None, 'process_count': 42}
            await ws.send(gzip.compress(json.dumps(m).encode()))
        elif msg == 'get_disks':
            await ws.send(gzip.compress(json.dumps([{'name': '/', 'total': 100 * GIB, 'available': 25 * GIB}]).encode()))

async def main():
    async with websockets.serve(handler, '127.0.0.1', 0) as srv:
        print(srv.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()

asyncio.run(main())
`

// startPySocktop runs the Python agent and returns its address and a
// function that kills it.
func startPySocktop(t *testing.T, token string) (string, func()) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "socktop.py")
	if err := os.WriteFile(p, []byte(pySocktop), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python(t), p, token)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	kill := func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
	t.Cleanup(kill)
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case port := <-line:
		if port == "" {
			t.Fatal("the python socktop agent did not start (is python3-websockets installed?)")
		}
		return "127.0.0.1:" + port, kill
	case <-time.After(2 * time.Minute):
		t.Fatal("the python socktop agent did not start")
	}
	return "", nil
}

func TestSocktopPoll(t *testing.T) {
	pyAddr, killPy := startPySocktop(t, "tk")

	// mb-agent's own socktop server is the second peer.
	agent, err := socktop.New(socktop.Options{Token: "agent-token"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(context.Background())
	adone := make(chan struct{})
	go func() {
		defer close(adone)
		agent.Serve(actx, ln)
	}()
	t.Cleanup(func() {
		acancel()
		<-adone
	})

	hosts := map[string]HostSettings{
		"pi":        {Socktop: "ws://" + pyAddr + "/ws", Token: "tk", Interval: time.Second},
		"pi-notok":  {Socktop: "ws://" + pyAddr + "/ws", Token: "wrong", Interval: time.Second},
		"mb-agent1": {Socktop: "ws://" + ln.Addr().String() + "/ws", Token: "agent-token", Interval: time.Second},
	}
	r := newRig(t, Settings{Hosts: hosts}, false, func(_ *Settings, ms *monitor.Settings, _ *Options) {
		ms.Grace = time.Second
		// As monitor.yaml's hosts give both the poller and the engine
		// their interval.
		ms.Hosts = map[string]monitor.HostSettings{"pi": {Interval: time.Second}}
	})
	waitFor(t, "pi's metrics with network deltas", func() bool {
		h, _ := r.host("pi")
		n, _ := h.Plugins["network_monitor"]["interfaces"].(map[string]any)
		eth, _ := n["eth0"].(map[string]any)
		return eth["bytes_recv_delta"] != nil
	})
	h, _ := r.host("pi")
	if h.Source != SourceSocktop || h.Reach != monitor.Up {
		t.Errorf("pi: %s %s", h.Source, h.Reach)
	}
	cpu, mem := h.Plugins["cpu_monitor"], h.Plugins["memory_monitor"]
	if cpu["cpu_percent"] != 37.5 || cpu["cpu_core_count"] != 2 || cpu["cpu_temp_c"] != 51.25 || cpu["process_count"] != 42 {
		t.Errorf("cpu_monitor %#v", cpu)
	}
	if mem["percent"] != 25.0 || mem["memory_total"] != uint64(8<<30) {
		t.Errorf("memory_monitor %#v", mem)
	}
	parts, _ := h.Plugins["disk_monitor"]["partitions"].(map[string]any)
	if root, _ := parts["/"].(map[string]any); root["percent"] != 75.0 || root["free_gb"] != 25.0 {
		t.Errorf("disk_monitor %#v", h.Plugins["disk_monitor"])
	}
	if n, _ := h.Plugins["network_monitor"]["interfaces"].(map[string]any); n["lo"] != nil || n["eth0"].(map[string]any)["bytes_recv_delta"] != uint64(1000) {
		t.Errorf("network_monitor %#v", h.Plugins["network_monitor"])
	}

	waitFor(t, "mb-agent's socktop metrics", func() bool {
		h, _ := r.host("mb-agent1")
		m := h.Plugins["memory_monitor"]
		total, _ := m["memory_total"].(uint64)
		_, hasCPU := h.Plugins["cpu_monitor"]["cpu_percent"]
		return total > 0 && hasCPU && h.Source == SourceSocktop
	})
	waitFor(t, "the wrong token's poll errors", func() bool { return r.f.Stats().PollErrors > 0 })
	if h, _ := r.host("pi-notok"); h.Reach == monitor.Up {
		t.Errorf("polled with a wrong token: %s, %+v", h.Reach, r.f.Stats())
	}

	// The agent goes away: the host becomes overdue.
	killPy()
	waitFor(t, "pi overdue", func() bool {
		r.eng.Tick(context.Background(), time.Now())
		h, _ := r.host("pi")
		return h.Reach == monitor.Overdue || h.Reach == monitor.Down
	})
}

package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/mbvm/mb/agent/socktop/socktoppb"
	"github.com/mbvm/mb/internal/testenv"
)

// In a booted mini guest: guest programs talk to mb-agent's command socket
// with `mb-agent send` (busybox nc has no -U); mb.ready ends `mb start
// --wait app:web`; mb.event shows in mb events; a burst of 1,000 requests
// leaves the agent's memory flat; and socktop's protocol is served to the
// host through a forwarded port, for Python's websockets and for a Go
// client, with the token.
func TestQEMUCommandSocketAndSocktop(t *testing.T) {
	e := requireVM(t)
	port := freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := e.command(ctx, "start", "demo", "--image", "mini", "--forward", fmt.Sprintf("%d:3000", port),
		"--cmdline", "mb.socktop=:3000 mb.socktop_token=tok", "--wait", "app:web", "--timeout", "10m")
	var startOut syncBuffer
	start.Stdout, start.Stderr = &startOut, &startOut
	if err := start.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() { started <- start.Wait() }()
	e.eventually("the agent of demo", func() bool {
		select {
		case err := <-started:
			t.Fatalf("mb start ended early: %v\n%s", err, startOut.String())
		default:
		}
		v := findVM(e.list(), "demo")
		return v != nil && v.AgentState() == "ok"
	})

	send := func(req string) result {
		t.Helper()
		return e.mb("exec", "demo", "--", "mb-agent", "send", req)
	}
	if r := send(`{"Command":"agent.ping"}`); r.code != 0 || !strings.Contains(r.stdout, `"StatusMessage":"pong"`) {
		t.Fatalf("agent.ping: %s", r)
	}
	select {
	case err := <-started:
		t.Fatalf("mb start --wait app:web returned before mb.ready: %v\n%s", err, startOut.String())
	default:
	}
	if r := send(`{"Command":"mb.ready","name":"web","detail":"listening"}`); r.code != 0 {
		t.Fatalf("mb.ready: %s", r)
	}
	select {
	case err := <-started:
		if err != nil || !strings.Contains(startOut.String(), "demo is ready") {
			t.Fatalf("mb start: %v\n%s", err, startOut.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("mb start --wait app:web still waits after mb.ready web:\n%s", startOut.String())
	}
	if v := findVM(e.list(), "demo"); v == nil || strings.Join(v.Agent.Ready, ",") != "web" {
		t.Errorf("mb ls --json readiness: %+v", v)
	}

	for _, c := range []struct {
		req, out string
		code     int
	}{
		{`{"Command":"mb.info"}`, `"vm":"demo"`, 0},
		{`{"Name":"mb.event","level":"warning","text":"disk 91% full"}`, `"seq":`, 0},
		{`{"Command":"mb.metric","plugin":"queue","fields":{"depth":12}}`, `"seq":`, 0},
		{`{"Command":"no.such"}`, `no handler`, 101},
		{`not json`, `not valid JSON`, 102},
		{`{"Command":"mb.event","level":"loud","text":"x"}`, `level \"loud\"`, 105},
		{`{"Command":`, `before the timeout`, 104}, // a client that stops mid-request
	} {
		if r := send(c.req); r.code != c.code || !strings.Contains(r.stdout, c.out) {
			t.Errorf("mb-agent send %s: %s; want exit %d and %q", c.req, r, c.code, c.out)
		}
	}
	// 2 MiB from stdin: refused with 102, the reply still delivered.
	big := exec.CommandContext(ctx, e.command(ctx).Path)
	big.Env = e.command(ctx).Env
	big.Args = []string{big.Path, "exec", "demo", "--", "mb-agent", "send", "-"}
	big.Stdin = bytes.NewReader(append([]byte(`{"Command":"mb.event","text":"`), bytes.Repeat([]byte("x"), 2<<20)...))
	out, err := big.Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 102 || !strings.Contains(string(out), "over 1048576 bytes") {
		t.Errorf("2 MiB request: %v, %q", err, out)
	}

	e.eventually("the guest-event in mb events", func() bool {
		for _, ev := range e.events() {
			if ev.VM == "demo" && ev.Type == "guest-event" && ev.Level == "warning" && ev.Reason == "disk 91% full" {
				return true
			}
		}
		return false
	})

	// The agent child's PID (the process other than PID 1 running /init,
	// mb-agent's binary) and resident memory, from the guest's /proc.
	agentPID := func() int {
		r := e.mb("exec", "demo", "--", "sh", "-c", `for p in /proc/[0-9]*; do [ ${p#/proc/} != 1 ] && ls -l $p/exe 2>/dev/null | grep -q -e '-> /init$' && echo ${p#/proc/}; done`)
		pid, err := strconv.Atoi(strings.TrimSpace(r.stdout))
		if err != nil {
			t.Fatalf("agent PID: %s", r)
		}
		return pid
	}
	pid := agentPID()
	rss := func() int {
		r := e.mb("exec", "demo", "--", "grep", "VmRSS", fmt.Sprintf("/proc/%d/status", pid))
		f := strings.Fields(r.stdout)
		if len(f) < 2 {
			t.Fatalf("VmRSS: %s", r)
		}
		kb, _ := strconv.Atoi(f[1])
		return kb
	}
	before := rss()
	burst := e.mb("exec", "--timeout", "10m", "demo", "--", "sh", "-c",
		`i=0; while [ $i -lt 1000 ]; do mb-agent send '{"Command":"agent.ping"}' >/dev/null || exit 1; i=$((i+1)); done`)
	if burst.code != 0 {
		t.Fatalf("1,000 requests: %s", burst)
	}
	after := rss()
	t.Logf("agent RSS before the burst %d KiB, after %d KiB", before, after)
	if after > before+4096 {
		t.Errorf("agent RSS grew from %d to %d KiB over 1,000 requests", before, after)
	}

	// socktop through the forwarded port.
	url := fmt.Sprintf("ws://127.0.0.1:%d/ws", port)
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/healthz: %s", resp.Status)
	}
	py := pythonSocktop(t, url+"?token=tok")
	if m := py["metrics"].(map[string]any)["value"].(map[string]any); m["hostname"] != "demo" || m["mem_total"].(float64) <= 0 {
		t.Errorf("metrics through python: %v", m)
	}
	found := false
	for _, r := range py["processes"].(map[string]any)["value"].(map[string]any)["rows"].([]any) {
		if r.(map[string]any)["pid"] == float64(pid) {
			found = true
		}
	}
	if !found {
		t.Errorf("the agent's PID %d is not in the process list python decoded: %v", pid, py["processes"])
	}
	if r := pythonSocktop(t, url, "--expect-refused"); r["refused"] != true {
		t.Errorf("python without the token: %v", r)
	}
	// The Go client: the process list decoded with the generated code.
	c, _, err := websocket.Dial(ctx, url+"?token=tok", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(64 << 20)
	if err := c.Write(ctx, websocket.MessageText, []byte("get_processes")); err != nil {
		t.Fatal(err)
	}
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		b, _ = io.ReadAll(zr)
	}
	var msg socktoppb.Processes
	if err := proto.Unmarshal(b, &msg); err != nil {
		t.Fatal(err)
	}
	found = false
	for _, p := range msg.Rows {
		if int(p.Pid) == pid && p.Name == "mb-agent" {
			found = true
		}
	}
	if !found || int(msg.ProcessCount) != len(msg.Rows) {
		t.Errorf("Go client: agent PID %d (mb-agent) not among %d processes", pid, len(msg.Rows))
	}
}

// pythonSocktop runs agent/socktop's Python client (Debian's
// python3-websockets) against url.
func pythonSocktop(t *testing.T, url string, args ...string) map[string]any {
	t.Helper()
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import websockets").Run(); err != nil {
		testenv.Need(t, "python3-websockets is not installed (apt-get install python3-websockets)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, append([]string{"../../agent/socktop/testdata/socktop_client.py", url}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("python client: %v\n%s", err, out)
	}
	var v map[string]any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("python client printed %q: %v", out, err)
	}
	return v
}

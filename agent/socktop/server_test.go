package socktop

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/mbvm/mb/agent/socktop/socktoppb"
	"github.com/mbvm/mb/internal/testenv"
)

// serve starts a server on 127.0.0.1 and returns its address.
func serve(t *testing.T, opts Options) (*Server, string) {
	t.Helper()
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, ln.Addr().String()
}

func dial(t *testing.T, url string, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	c.SetReadLimit(64 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// frame is one reply, gunzipped when it came gzip-compressed.
type frame struct {
	typ     websocket.MessageType
	gzipped bool
	raw     int // bytes on the wire
	data    []byte
}

func ask(t *testing.T, c *websocket.Conn, req string) frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(req)); err != nil {
		t.Fatalf("send %s: %v", req, err)
	}
	return next(t, ctx, c)
}

func next(t *testing.T, ctx context.Context, c *websocket.Conn) frame {
	t.Helper()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	f := frame{typ: typ, raw: len(b), data: b}
	if typ == websocket.MessageBinary && bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if f.data, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
		f.gzipped = true
	}
	return f
}

// checkFraming asserts the size rule: text up to 768 bytes, gzip above.
func checkFraming(t *testing.T, what string, f frame, json bool) {
	t.Helper()
	switch {
	case len(f.data) > gzipAbove && !f.gzipped:
		t.Errorf("%s: %d bytes sent uncompressed", what, len(f.data))
	case len(f.data) <= gzipAbove && f.gzipped:
		t.Errorf("%s: %d bytes gzip-compressed", what, len(f.data))
	case json && !f.gzipped && f.typ != websocket.MessageText:
		t.Errorf("%s: small JSON in a %v frame", what, f.typ)
	case f.gzipped && f.typ != websocket.MessageBinary:
		t.Errorf("%s: gzip in a %v frame", what, f.typ)
	}
}

// fakeProc writes a procfs with the given number of network interfaces,
// to control the size of the metrics reply.
func fakeProc(t *testing.T, ifaces int) string {
	dir := t.TempDir()
	write := func(name, text string) {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("stat", "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 50 0 50 400 0 0 0 0 0 0\ncpu1 50 0 50 400 0 0 0 0 0 0\n")
	write("meminfo", "MemTotal: 1000 kB\nMemFree: 200 kB\nMemAvailable: 400 kB\nSwapTotal: 100 kB\nSwapFree: 40 kB\n")
	var nd strings.Builder
	nd.WriteString("Inter-|   Receive\n face |bytes\n")
	for i := range ifaces {
		fmt.Fprintf(&nd, "eth%d: %d 1 0 0 0 0 0 0 %d 1 0 0 0 0 0 0\n", i, 1000+i, 2000+i)
	}
	write("net/dev", nd.String())
	write("mounts", "")
	write("42/stat", "42 (my (odd) name) S 1 42 42 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 555 1000 25 0 0\n")
	return dir
}

func TestMetricsFieldsAndFraming(t *testing.T) {
	for _, tc := range []struct {
		ifaces  int
		gzipped bool
	}{{1, false}, {40, true}} {
		_, addr := serve(t, Options{ProcRoot: fakeProc(t, tc.ifaces)})
		c := dial(t, "ws://"+addr+"/ws", nil)
		f := ask(t, c, "get_metrics")
		checkFraming(t, "metrics", f, true)
		if f.gzipped != tc.gzipped {
			t.Errorf("%d interfaces: gzipped=%v, want %v (%d bytes)", tc.ifaces, f.gzipped, tc.gzipped, len(f.data))
		}
		var m map[string]any
		if err := json.Unmarshal(f.data, &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"cpu_total", "cpu_per_core", "mem_total", "mem_used", "swap_total", "swap_used", "hostname", "networks", "disks", "top_processes", "process_count", "sampled_at_ms"} {
			if _, ok := m[k]; !ok {
				t.Errorf("metrics lack %q: %s", k, f.data)
			}
		}
		host, _ := os.Hostname()
		if m["mem_total"] != 1024000.0 || m["mem_used"] != 614400.0 || m["swap_used"] != 61440.0 || m["hostname"] != host ||
			len(m["cpu_per_core"].([]any)) != 2 || m["cpu_total"] != 20.0 || len(m["networks"].([]any)) != tc.ifaces || m["process_count"] != 1.0 {
			t.Errorf("metrics %s", f.data)
		}
		net0 := m["networks"].([]any)[0].(map[string]any)
		if net0["name"] != "eth0" || net0["received"] != 1000.0 || net0["transmitted"] != 2000.0 {
			t.Errorf("network %v", net0)
		}
	}
}

// Requests in both forms are answered on one connection; an unknown one
// is ignored and the connection stays open.
func TestRequestFormsAndUnknownRequests(t *testing.T) {
	_, addr := serve(t, Options{ProcRoot: fakeProc(t, 1)})
	c := dial(t, "ws://"+addr+"/ws", nil)
	for _, req := range []string{"get_disks", `{"type":"disks"}`} {
		if f := ask(t, c, req); string(f.data) != "[]" {
			t.Errorf("%s: %q", req, f.data)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, junk := range []string{"get_weather", `{"type":"weather"}`, "{", "get_process_metrics:1"} {
		c.Write(ctx, websocket.MessageText, []byte(junk))
	}
	c.Write(ctx, websocket.MessageBinary, []byte("get_metrics"))
	f := ask(t, c, `{"type":"processes"}`)
	var msg socktoppb.Processes
	if err := proto.Unmarshal(f.data, &msg); err != nil || f.typ != websocket.MessageBinary {
		t.Fatalf("the reply after unknown requests is not the process list: %v %q", err, f.data)
	}
	if msg.ProcessCount != 1 || len(msg.Rows) != 1 || msg.Rows[0].Pid != 42 || msg.Rows[0].Name != "my (odd) name" ||
		msg.Rows[0].MemBytes != 25*uint64(os.Getpagesize()) {
		t.Errorf("fake process list: %v", &msg)
	}
}

// The process list is the real one: it holds this test's PID under its
// name, and a process that burns CPU between two samples shows it.
func TestProcessesRealListAndCPU(t *testing.T) {
	_, addr := serve(t, Options{ProcessesTTL: time.Nanosecond})
	c := dial(t, "ws://"+addr+"/ws", nil)
	own := func() *socktoppb.Process {
		f := ask(t, c, "get_processes")
		checkFraming(t, "processes", f, false)
		var msg socktoppb.Processes
		if err := proto.Unmarshal(f.data, &msg); err != nil {
			t.Fatal(err)
		}
		if int(msg.ProcessCount) != len(msg.Rows) {
			t.Errorf("process_count %d, %d rows", msg.ProcessCount, len(msg.Rows))
		}
		for _, p := range msg.Rows {
			if int(p.Pid) == os.Getpid() {
				return p
			}
		}
		t.Fatalf("pid %d not in the %d processes", os.Getpid(), len(msg.Rows))
		return nil
	}
	own()
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
	}
	p := own()
	comm, _ := os.ReadFile("/proc/self/comm")
	if p.Name != strings.TrimSpace(string(comm)) || p.MemBytes == 0 || p.CpuUsage <= 0 {
		t.Errorf("own process: %v (comm %q)", p, comm)
	}
}

// Within the TTL, a second client gets the same sample.
func TestMetricsCachedForTheTTL(t *testing.T) {
	_, addr := serve(t, Options{ProcRoot: fakeProc(t, 1), MetricsTTL: time.Hour})
	var stamps []any
	for range 2 {
		c := dial(t, "ws://"+addr+"/ws", nil)
		var m map[string]any
		json.Unmarshal(ask(t, c, "get_metrics").data, &m)
		stamps = append(stamps, m["sampled_at_ms"])
	}
	if stamps[0] != stamps[1] || stamps[0] == nil {
		t.Errorf("two clients within the TTL got samples %v", stamps)
	}
}

func TestToken(t *testing.T) {
	_, addr := serve(t, Options{Token: "s3cret", ProcRoot: fakeProc(t, 1)})
	for _, q := range []string{"", "?token=wrong", "?token="} {
		c := dial(t, "ws://"+addr+"/ws"+q, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c.Write(ctx, websocket.MessageText, []byte("get_metrics"))
		_, b, err := c.Read(ctx)
		cancel()
		if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
			t.Errorf("token %q: got %q, %v; want closed with policy violation", q, b, err)
		}
	}
	c := dial(t, "ws://"+addr+"/ws?token=s3cret", nil)
	if f := ask(t, c, "get_disks"); string(f.data) != "[]" {
		t.Errorf("with the token: %q", f.data)
	}
}

func TestHealthz(t *testing.T) {
	_, addr := serve(t, Options{Token: "s3cret"})
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/healthz: %s", resp.Status)
	}
}

// pinned returns a TLS client config that accepts only the certificate
// with this fingerprint, as socktop's client pins the agent's.
func pinned(fp string) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || Fingerprint(raw[0]) != fp {
				return errors.New("certificate fingerprint does not match the pinned one")
			}
			return nil
		},
	}
}

func TestTLSWithPinnedFingerprint(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	s, addr := serve(t, Options{TLSDir: dir, ProcRoot: fakeProc(t, 1)})
	fp := s.Fingerprint()
	if len(fp) != 95 {
		t.Fatalf("fingerprint %q", fp)
	}
	for _, f := range []string{certFile, keyFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", f, fi.Mode(), err)
		}
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: pinned(fp)}}
	c := dial(t, "wss://"+addr+"/ws", &websocket.DialOptions{HTTPClient: hc})
	if f := ask(t, c, "get_disks"); string(f.data) != "[]" {
		t.Errorf("over TLS: %q", f.data)
	}
	// Another fingerprint is refused by the client.
	bad := &http.Client{Transport: &http.Transport{TLSClientConfig: pinned(strings.Repeat("00:", 31) + "00")}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := websocket.Dial(ctx, "wss://"+addr+"/ws", &websocket.DialOptions{HTTPClient: bad}); err == nil {
		t.Error("a client pinning another fingerprint connected")
	}
	// A restart keeps the certificate.
	s2, _ := serve(t, Options{TLSDir: dir})
	if s2.Fingerprint() != fp {
		t.Errorf("fingerprint changed across restarts: %s, then %s", fp, s2.Fingerprint())
	}
}

func TestReadEnv(t *testing.T) {
	env := map[string]string{EnvToken: "t", EnvEnableSSL: "1", EnvMetricsTTL: "100", EnvDisksTTL: "2000"}
	e, err := ReadEnv(func(k string) string { return env[k] })
	if err != nil || e.Token != "t" || !e.EnableSSL || e.MetricsTTL != 100*time.Millisecond || e.DisksTTL != 2*time.Second || e.ProcessesTTL != 0 {
		t.Errorf("%+v %v", e, err)
	}
	env[EnvProcessesTTL] = "soon"
	if _, err := ReadEnv(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), EnvProcessesTTL) {
		t.Errorf("bad TTL: %v", err)
	}
}

// pythonClient runs testdata/socktop_client.py (Debian's python3-websockets,
// a client nobody here wrote) and decodes its one line of output.
func pythonClient(t *testing.T, url string, args ...string) map[string]any {
	t.Helper()
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import websockets").Run(); err != nil {
		testenv.Need(t, fmt.Sprintf("python3-websockets is not installed (apt-get install python3-websockets): %v", err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, append([]string{"testdata/socktop_client.py", url}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("python client: %v\n%s", err, out)
	}
	var v map[string]any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("python client printed %q: %v", out, err)
	}
	return v
}

func TestPythonWebsocketsClient(t *testing.T) {
	_, addr := serve(t, Options{Token: "tok"})
	url := "ws://" + addr + "/ws?token=tok"
	v := pythonClient(t, url)
	metrics := v["metrics"].(map[string]any)["value"].(map[string]any)
	host, _ := os.Hostname()
	if metrics["hostname"] != host || metrics["mem_total"].(float64) <= 0 {
		t.Errorf("metrics through python: %v", metrics)
	}
	if _, ok := v["disks"].(map[string]any)["value"].([]any); !ok {
		t.Errorf("disks through python: %v", v["disks"])
	}
	procs := v["processes"].(map[string]any)
	rows := procs["value"].(map[string]any)["rows"].([]any)
	found := false
	for _, r := range rows {
		if r.(map[string]any)["pid"] == float64(os.Getpid()) {
			found = true
		}
	}
	if !found || procs["frame"] != "gzip" {
		t.Errorf("process list through python: pid %d found=%v, frame %v, %d rows", os.Getpid(), found, procs["frame"], len(rows))
	}
	if r := pythonClient(t, "ws://"+addr+"/ws", "--expect-refused"); r["refused"] != true {
		t.Errorf("python client without the token: %v", r)
	}
}

// The hand-written encoding is the generated code's, byte for byte.
func TestEncodeProcessesMatchesGeneratedCode(t *testing.T) {
	ps := []ProcessInfo{
		{PID: 1, Name: "init", CPUUsage: 0.5, MemBytes: 4096},
		{PID: 70000, Name: "", CPUUsage: 0, MemBytes: 0},
		{PID: 42, Name: "my (odd) name", CPUUsage: 99.75, MemBytes: 1 << 40},
	}
	msg := &socktoppb.Processes{ProcessCount: uint64(len(ps))}
	for _, p := range ps {
		msg.Rows = append(msg.Rows, &socktoppb.Process{Pid: p.PID, Name: p.Name, CpuUsage: p.CPUUsage, MemBytes: p.MemBytes})
	}
	want, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	if got := encodeProcesses(ps); !bytes.Equal(got, want) {
		t.Errorf("encodeProcesses:\n got %x\nwant %x", got, want)
	}
	if got := encodeProcesses(nil); len(got) != 0 {
		t.Errorf("no processes: %x", got)
	}
}

package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/daemon/api"
)

// A spec over 1 MiB is refused with 413 and a short message; it was cut at
// 1 MiB and the truncated spec accepted (here the cut loses "cpus: 4").
func TestCreateBodyTooLarge(t *testing.T) {
	td := startTestDaemon(t, "", nil)
	ctx := stepCtx(t)
	var doc bytes.Buffer
	doc.WriteString("name: big\nbackend: fake\n")
	for doc.Len() < 1200<<10 {
		doc.WriteString("# padding padding padding padding padding padding padding padding\n")
	}
	doc.WriteString("cpus: 4\n")
	_, err := td.c.Create(ctx, doc.Bytes())
	var se *api.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusRequestEntityTooLarge || len(se.Message) > 200 || !strings.Contains(se.Message, "1 MiB") {
		t.Fatalf("create with a 1.2 MB spec: %v; want 413 with a short message naming 1 MiB", err)
	}
	if _, err := td.c.Inspect(ctx, "big"); !api.IsNotFound(err) {
		t.Errorf("after the refused create: %v; want no VM", err)
	}
}

// Start and stop bodies are as strict as the spec: an unknown field or a
// negative timeout is a 400 naming it (both were accepted); a spec.yaml
// whose name is not its directory's is refused with a message.
func TestStrictStartStopBodies(t *testing.T) {
	td := startTestDaemon(t, "", nil)
	ctx := stepCtx(t)
	if _, err := td.c.Create(ctx, []byte("name: s\nbackend: fake\n")); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path, body, want string
	}{
		{"/v1/vms/s/start", `{"timeout_secs": 5}`, `unknown field "timeout_secs"`},
		{"/v1/vms/s/stop", `{"forced": true}`, `unknown field "forced"`},
		{"/v1/vms/s/start", `{"timeout_seconds": -1}`, "must not be negative"},
		{"/v1/vms/s/stop", `{"timeout_seconds": -5}`, "must not be negative"},
	}
	for _, c := range cases {
		status, e := rawCall(t, td.home, "POST", c.path, []byte(c.body))
		if status != http.StatusBadRequest || !strings.Contains(e.Error, c.want) {
			t.Errorf("POST %s %s: %d %q; want 400 with %q", c.path, c.body, status, e.Error, c.want)
		}
	}
	if v, err := td.c.Inspect(ctx, "s"); err != nil || v.State != api.StateStopped {
		t.Errorf("after the refused requests: %+v, %v; want it stopped", v, err)
	}

	// spec.yaml renamed by hand: the start says so.
	p := filepath.Join(td.home, "vms", "s", "spec.yaml")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, bytes.Replace(data, []byte("name: s\n"), []byte("name: other\n"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = td.c.Start(ctx, "s", 0)
	var se *api.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusBadRequest || !strings.Contains(se.Message, `names the VM "other"`) {
		t.Errorf("start of a VM whose spec names another: %v; want 400 naming the mismatch", err)
	}
}

// mb logs -f ends when the VM is deleted; it went on forever, and then
// followed a new VM that took the name.
func TestLogsFollowEndsOnDelete(t *testing.T) {
	td := startTestDaemon(t, "", nil)
	ctx := stepCtx(t)
	if _, err := td.c.Create(ctx, []byte("name: l\nbackend: fake\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := td.c.Start(ctx, "l", 0); err != nil {
		t.Fatal(err)
	}
	body, err := td.c.Logs(ctx, "l", "serial", true)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	ended := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, body)
		ended <- err
	}()
	if err := td.c.Delete(ctx, "l", true); err != nil {
		t.Fatal(err)
	}
	if _, err := td.c.Create(ctx, []byte("name: l\nbackend: fake\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ended:
		if err != nil {
			t.Errorf("the follow ended with %v; want a clean end", err)
		}
	case <-time.After(30 * time.Second): // generous: it ends within 200 ms
		t.Fatal("the follow of a deleted VM did not end")
	}
}

// Every error reply carries the code of its kind; a stray directory where
// a VM would go and a binary spec each get an accurate message.
func TestErrorCodes(t *testing.T) {
	home, err := os.MkdirTemp("/tmp", "mbd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	if err := os.MkdirAll(filepath.Join(home, "vms"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(t.TempDir(), filepath.Join(home, "vms", "ln")); err != nil {
		t.Fatal(err)
	}
	td := startTestDaemon(t, home, nil)
	ctx := stepCtx(t)
	if _, err := td.c.Create(ctx, []byte("name: run\nbackend: fake\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := td.c.Start(ctx, "run", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := td.c.Create(ctx, []byte("name: off\nbackend: fake\n")); err != nil {
		t.Fatal(err)
	}
	big := append([]byte("name: big\nuser_data: "), bytes.Repeat([]byte("x"), 2<<20)...)
	cases := []struct {
		method, path string
		body         []byte
		status       int
		code, want   string
	}{
		{"GET", "/v1/vms/nosuch", nil, 404, api.CodeNotFound, "create it with"},
		{"GET", "/v1/vms/ln", nil, 404, api.CodeStrayDir, "symlink"},
		{"POST", "/v1/vms", []byte("name: ln\nbackend: fake\n"), 409, api.CodeStrayDir, "symlink"},
		{"POST", "/v1/vms", []byte("name: run\nbackend: fake\n"), 409, api.CodeExists, "already exists"},
		{"POST", "/v1/vms", []byte("\x00\x01\x02\xff\xfe binary"), 400, api.CodeBadRequest, "not text"},
		{"POST", "/v1/vms", []byte("\xff\xfe\xfd"), 400, api.CodeBadRequest, "not text"},
		{"POST", "/v1/vms", big, 413, api.CodeTooLarge, "1 MiB"},
		{"GET", "/v1/vms/Bad_Name", nil, 400, api.CodeBadRequest, "invalid VM name"},
		{"DELETE", "/v1/vms/run", nil, 409, api.CodeRunning, "running"},
		{"GET", "/v1/vms/off/metrics", nil, 409, api.CodeNotRunning, "not running"},
		{"GET", "/v1/vms/run/metrics", nil, 409, api.CodeNoAgent, "no guest agent"},
		{"PUT", "/v1/vms", nil, 405, api.CodeBadRequest, "method not allowed"},
		{"GET", "/v2/x", nil, 404, api.CodeNotFound, "no such endpoint"},
	}
	for _, c := range cases {
		status, e := rawCall(t, td.home, c.method, c.path, c.body)
		if status != c.status || e.Code != c.code || !strings.Contains(e.Error, c.want) {
			t.Errorf("%s %s: %d %q %q; want %d, code %q and %q", c.method, c.path, status, e.Code, e.Error, c.status, c.code, c.want)
		}
	}
}

// At the connection cap with every connection busy (here in event
// follows), a new client gets a 503 with code busy rather than a hang;
// once a follow ends, calls are answered again.
func TestConnectionCapRefusesClearly(t *testing.T) {
	td := startTestDaemon(t, "", func(c *Config) { c.MaxConns = 4 })
	ctx := stepCtx(t)
	td.c.Close() // its idle connection would be evicted first; keep the count exact
	var streams []io.ReadCloser
	for i := 0; i < 4; i++ {
		c := api.NewClient(SocketPath(td.home))
		defer c.Close()
		body, err := c.Events(ctx, true)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { body.Close() }) // before the daemon's stop, which needs a slot
		streams = append(streams, body)
	}
	status, e := rawCall(t, td.home, "GET", "/v1/vms", nil)
	if status != http.StatusServiceUnavailable || e.Code != api.CodeBusy {
		t.Errorf("a call with 4 follows open at a cap of 4: %d %q %q; want 503 and code busy", status, e.Code, e.Error)
	}
	streams[0].Close()
	c := api.NewClient(SocketPath(td.home))
	defer c.Close()
	waitVMList(t, c)
	for _, s := range streams[1:] {
		s.Close()
	}
}

// A refused client that is slow to write its request still gets the
// busy answer: the daemon reads the request before answering and closing,
// so the client's write does not fail with a broken pipe (CI saw "write:
// broken pipe" from a client whose request arrived after the refusal).
func TestConnectionCapRefusalWaitsForTheRequest(t *testing.T) {
	td := startTestDaemon(t, "", func(c *Config) { c.MaxConns = 2 })
	ctx := stepCtx(t)
	td.c.Close()
	for i := 0; i < 2; i++ {
		c := api.NewClient(SocketPath(td.home))
		defer c.Close()
		body, err := c.Events(ctx, true)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { body.Close() })
	}
	conn, err := net.Dial("unix", SocketPath(td.home))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	time.Sleep(300 * time.Millisecond) // the old refusal had closed by now
	if _, err := io.WriteString(conn, "GET /v1/vms HTTP/1.1\r\nHost: mb\r\n\r\n"); err != nil {
		t.Fatalf("writing the request to a refused connection: %v; want the request read and answered", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the refusal: %v", err)
	}
	defer resp.Body.Close()
	var e api.Error
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || e.Code != api.CodeBusy {
		t.Errorf("refusal: %d %q; want 503 busy", resp.StatusCode, e.Code)
	}
}

// waitVMList polls until a list call is answered (a follow's connection is
// freed when the daemon notices its client left).
func waitVMList(t *testing.T, c *api.Client) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.List(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("list after a follow ended: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

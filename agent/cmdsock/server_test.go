package cmdsock

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mbvm/mb/internal/testenv"
)

// startServer runs a server for reg on a socket under a fresh directory
// and waits until it listens (when reg has handlers).
func startServer(t *testing.T, reg *Registry, opts Options) *Server {
	t.Helper()
	if opts.Path == "" {
		opts.Path = filepath.Join(t.TempDir(), "run", "commands.sock")
	}
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := NewServer(reg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	})
	if reg.Len() > 0 {
		waitFor(t, "the socket to accept", func() bool {
			c, err := net.Dial("unix", s.Path())
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	}
	return s
}

func isSocket(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode()&os.ModeSocket != 0
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// testRegistry has handlers covering each outcome.
func testRegistry(t *testing.T) *Registry {
	reg := NewRegistry()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(reg.Register("echo", func(ctx context.Context, req *Request) (Reply, error) {
		var in struct{ Text string }
		if err := req.Decode(&in); err != nil {
			return nil, err
		}
		return Reply{"Text": in.Text, "Command": req.Command, "UID": req.Peer.UID}, nil
	}))
	must(reg.Register("fail", func(ctx context.Context, req *Request) (Reply, error) {
		return nil, errors.New("the disk is on fire")
	}))
	must(reg.Register("panic", func(ctx context.Context, req *Request) (Reply, error) {
		panic("boom")
	}))
	must(reg.Register("unencodable", func(ctx context.Context, req *Request) (Reply, error) {
		return Reply{"ch": make(chan int)}, nil
	}))
	must(reg.Register("custom", func(ctx context.Context, req *Request) (Reply, error) {
		return Reply{"Status": 7, "StatusMessage": "seven"}, nil
	}))
	return reg
}

type reply struct {
	Status        int
	StatusMessage string
	Text          string
	Command       string
}

// roundTrip sends req the way the reference client does: write, then read
// until EOF. It checks that exactly one JSON object came back.
func roundTrip(t *testing.T, path string, req []byte) reply {
	t.Helper()
	b, err := Send(context.Background(), path, req)
	if err != nil {
		t.Fatalf("send %.40q: %v", req, err)
	}
	return decodeOne(t, b)
}

func decodeOne(t *testing.T, b []byte) reply {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	var r reply
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("reply %q: %v", b, err)
	}
	if err := dec.Decode(new(json.RawMessage)); err != io.EOF {
		t.Fatalf("more than one reply in %q", b)
	}
	return r
}

func TestStatusCodes(t *testing.T) {
	s := startServer(t, testRegistry(t), Options{})
	for _, tc := range []struct {
		req, text string
		status    int
		msg       string
	}{
		{req: `{"Command":"echo","Text":"hi"}`, status: 0, text: "hi"},
		{req: `{"Name":"echo","Text":"by name"}`, status: 0, text: "by name"},
		{req: `{"Command":"echo","Name":"nope","Text":"Command wins"}`, status: 0, text: "Command wins"},
		{req: `{"Command":"custom"}`, status: 7, msg: "seven"},
		{req: `{"Command":"missing"}`, status: CodeNoHandler, msg: `no handler for command "missing"`},
		{req: `{"Text":"no command"}`, status: CodeNoHandler, msg: `no handler for command ""`},
		{req: `{"Command" "echo"}`, status: CodeBadRequest, msg: "not valid JSON"},
		{req: `[1,2]`, status: CodeBadRequest, msg: "must be a JSON object"},
		{req: `{"Command":42}`, status: CodeBadRequest, msg: "Command must be a string"},
		{req: `{"Command":"fail"}`, status: CodeHandler, msg: "the disk is on fire"},
		{req: `{"Command":"panic"}`, status: CodeInternal, msg: "internal error"},
		{req: `{"Command":"unencodable"}`, status: CodeInternal, msg: "internal error"},
	} {
		r := roundTrip(t, s.Path(), []byte(tc.req))
		if r.Status != tc.status || !strings.Contains(r.StatusMessage, tc.msg) || r.Text != tc.text {
			t.Errorf("%s: got %+v, want status %d, message containing %q, text %q", tc.req, r, tc.status, tc.msg, tc.text)
		}
	}
}

// A request cut short by the client's half-close is bad JSON; a client
// that sends nothing and closes gets a connection error.
func TestHalfClosedRequests(t *testing.T) {
	s := startServer(t, testRegistry(t), Options{})
	for req, want := range map[string]int{`{"Command":"ec`: CodeBadRequest, ``: CodeConn} {
		c, err := net.Dial("unix", s.Path())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, req)
		c.(*net.UnixConn).CloseWrite()
		b, _ := io.ReadAll(c)
		c.Close()
		if r := decodeOne(t, b); r.Status != want {
			t.Errorf("%q: status %d (%s), want %d", req, r.Status, r.StatusMessage, want)
		}
	}
}

// The server answers as soon as one object is complete: the client keeps
// its side open, as the reference client does, and still gets the reply
// followed by EOF.
func TestFaithfulClientGetsOneReplyAndEOF(t *testing.T) {
	s := startServer(t, testRegistry(t), Options{})
	c, err := net.Dial("unix", s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, `{"Command":"echo","Text":"faithful"}`); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading until EOF: %v (got %q)", err, b)
	}
	if r := decodeOne(t, b); r.Status != 0 || r.Text != "faithful" {
		t.Fatalf("reply %+v", r)
	}
}

func TestSilentClientTimesOut(t *testing.T) {
	s := startServer(t, testRegistry(t), Options{Timeout: 200 * time.Millisecond})
	for _, partial := range []string{"", `{"Command":"echo"`} {
		c, err := net.Dial("unix", s.Path())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, partial)
		b, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if r := decodeOne(t, b); r.Status != CodeTimeout {
			t.Errorf("after %q: %+v, want %d", partial, r, CodeTimeout)
		}
	}
}

// Two MiB, as garbage and as an object that never ends, get 102 and the
// connection closed, without the server reading it all.
func TestOversizedRequests(t *testing.T) {
	s := startServer(t, testRegistry(t), Options{})
	garbage := make([]byte, 2<<20)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range garbage {
		garbage[i] = byte(rnd.IntN(256))
	}
	garbage[0] = '{'
	long := append([]byte(`{"Command":"echo","Text":"`), bytes.Repeat([]byte("a"), 2<<20)...)
	for name, req := range map[string][]byte{"garbage": garbage, "long": long} {
		c, err := net.Dial("unix", s.Path())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		go func() { c.Write(req) }() // fails once the server closes
		b, err := io.ReadAll(c)
		c.Close()
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("%s: %v", name, err)
		}
		r := decodeOne(t, b)
		if r.Status != CodeBadRequest {
			t.Errorf("%s: %+v, want %d", name, r, CodeBadRequest)
		}
		if name == "long" && !strings.Contains(r.StatusMessage, "over 1048576 bytes") {
			t.Errorf("long: message %q does not name the limit", r.StatusMessage)
		}
	}
}

func TestListensOnlyWhileHandlersAreRegistered(t *testing.T) {
	reg := NewRegistry()
	s := startServer(t, reg, Options{})
	time.Sleep(50 * time.Millisecond)
	if _, err := os.Lstat(s.Path()); !os.IsNotExist(err) {
		t.Fatalf("socket exists with no handler: %v", err)
	}
	h := func(ctx context.Context, req *Request) (Reply, error) { return Reply{"Text": "a"}, nil }
	if err := reg.Register("a", h); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register("a", h); !errors.Is(err, ErrDuplicate) {
		t.Errorf("second registration of a: %v", err)
	}
	waitFor(t, "the socket after the first Register", func() bool { return isSocket(s.Path()) })
	if r := roundTrip(t, s.Path(), []byte(`{"Command":"a"}`)); r.Text != "a" {
		t.Fatalf("%+v", r)
	}
	if err := reg.Unregister("a"); err != nil {
		t.Fatal(err)
	}
	if err := reg.Unregister("a"); err == nil {
		t.Error("unregistering an absent handler succeeded")
	}
	waitFor(t, "the socket to go after the last Unregister", func() bool {
		_, err := os.Lstat(s.Path())
		return os.IsNotExist(err)
	})
	reg.Register("b", h)
	waitFor(t, "the socket to come back", func() bool { return isSocket(s.Path()) })
}

func TestSocketModeAndGroup(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, testRegistry(t), Options{Path: filepath.Join(dir, "run", "c.sock"), Group: "12345"})
	for path, mode := range map[string]os.FileMode{s.Path(): 0o770, filepath.Dir(s.Path()): 0o750} {
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != mode || st.Gid != 12345 || int(st.Uid) != os.Getuid() {
			t.Errorf("%s: mode %v uid %d gid %d, want %v uid %d gid 12345", path, fi.Mode().Perm(), st.Uid, st.Gid, mode, os.Getuid())
		}
	}
	// Nothing is left behind by the temporary bind.
	ents, _ := os.ReadDir(filepath.Dir(s.Path()))
	if len(ents) != 1 {
		t.Errorf("socket directory holds %d entries, want only the socket", len(ents))
	}
	if _, err := NewServer(NewRegistry(), Options{Group: "no-such-group-here"}); err == nil || !strings.Contains(err.Error(), "no-such-group-here") {
		t.Errorf("unknown group: %v", err)
	}
}

func TestStaleSocketReplacedLiveOneRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	// Live: another process answers there.
	reg := testRegistry(t)
	s, err := NewServer(reg, Options{Path: path, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("Run over a live socket: %v", err)
	}
	ln.Close() // now stale
	startServer(t, reg, Options{Path: path})
	if r := roundTrip(t, path, []byte(`{"Command":"echo","Text":"x"}`)); r.Text != "x" {
		t.Fatalf("%+v", r)
	}
}

// TestMain runs helperClient instead of the tests when the test binary is
// started as the child process of TestPeerCredentials.
func TestMain(m *testing.M) {
	if path := os.Getenv("CMDSOCK_HELPER_PATH"); path != "" {
		helperClient(path)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helperClient is the child process of TestPeerCredentials: it sends one
// request and prints the reply, or the error.
func helperClient(path string) {
	b, err := Send(context.Background(), path, []byte(`{"Command":"echo","Text":"child"}`))
	if err != nil {
		fmt.Printf("ERROR %v\n", err)
		return
	}
	fmt.Printf("REPLY %s\n", b)
}

// runAs runs the test binary as helperClient, as uid 65534 and gid gid.
func runAs(t *testing.T, exe, path string, gid uint32) string {
	t.Helper()
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "CMDSOCK_HELPER_PATH="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: gid}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "REPLY ") || strings.HasPrefix(line, "ERROR ") {
			return line
		}
	}
	t.Fatalf("child printed no result:\n%s", out)
	return ""
}

func TestPeerCredentials(t *testing.T) {
	if os.Getuid() != 0 {
		testenv.Need(t, "root, to run a client as another uid")
	}
	// A directory every uid can traverse, holding a copy of the test
	// binary that uid 65534 can run.
	dir, err := os.MkdirTemp("", "cmdsock-peer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "client.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, testRegistry(t), Options{Path: filepath.Join(dir, "run", "c.sock"), Group: "12345"})

	// A member of the group is served.
	if out := runAs(t, exe, s.Path(), 12345); !strings.Contains(out, `"Text":"child"`) || !strings.Contains(out, `"UID":65534`) {
		t.Errorf("group member: %s", out)
	}
	// Anyone else cannot even connect: the file mode keeps them out.
	if out := runAs(t, exe, s.Path(), 65534); !strings.Contains(out, "permission denied") || !strings.HasPrefix(out, "ERROR") {
		t.Errorf("outsider through the file mode: %s", out)
	}
	// With the mode loosened by mistake, SO_PEERCRED still refuses them.
	os.Chmod(filepath.Dir(s.Path()), 0o755)
	os.Chmod(s.Path(), 0o777)
	out := runAs(t, exe, s.Path(), 65534)
	if !strings.HasPrefix(out, "REPLY ") {
		t.Fatalf("outsider with a loose mode: %s", out)
	}
	r := decodeOne(t, []byte(strings.TrimPrefix(out, "REPLY ")))
	if r.Status != CodeConn || !strings.Contains(r.StatusMessage, "uid 65534") || r.Text != "" {
		t.Errorf("outsider with a loose mode was not refused: %+v", r)
	}
}

// A burst of 1,000 requests leaves the heap and the goroutines where they
// were.
func TestBurstMemoryFlat(t *testing.T) {
	s := startServer(t, testRegistry(t), Options{})
	burst := func() {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		for i := range 1000 {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				req := fmt.Sprintf(`{"Command":"echo","Text":"%d"}`, i)
				if i%10 == 0 {
					req = `{"Command" "echo"}` // some bad ones too
				}
				if _, err := Send(context.Background(), s.Path(), []byte(req)); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	burst() // warm up pools and buffers
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	g0, h0 := runtime.NumGoroutine(), heap()
	burst()
	waitFor(t, "the connection goroutines to end", func() bool { return runtime.NumGoroutine() <= g0 })
	if h1 := heap(); h1 > h0+4<<20 {
		t.Errorf("heap grew from %d to %d bytes over 1,000 requests", h0, h1)
	}
}

package register

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// tracker is an httptest server that checks every request against the VM
// Tracker's documented registration call and records the bodies.
type tracker struct {
	t     *testing.T
	token string
	// fail answers the n-th request (from 1) with 500 when it returns true.
	fail func(n int) bool

	mu   sync.Mutex
	got  []Info
	bad  []string
	seen chan struct{}
}

func newTracker(t *testing.T, token string, fail func(int) bool) (*tracker, *httptest.Server) {
	tr := &tracker{t: t, token: token, fail: fail, seen: make(chan struct{}, 1000)}
	srv := httptest.NewServer(tr)
	t.Cleanup(srv.Close)
	return tr, srv
}

func (tr *tracker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	problem := ""
	switch {
	case r.Method != http.MethodPost:
		problem = "method " + r.Method
	case r.URL.Path != "/api/register":
		problem = "path " + r.URL.Path
	case r.Header.Get("Content-Type") != "application/json":
		problem = "content type " + r.Header.Get("Content-Type")
	case tr.token != "" && r.Header.Get("Authorization") != "Bearer "+tr.token:
		problem = "authorization " + r.Header.Get("Authorization")
	case tr.token == "" && r.Header.Get("Authorization") != "":
		problem = "unexpected authorization header"
	}
	var info Info
	body, _ := io.ReadAll(r.Body)
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&info); err != nil && problem == "" {
		problem = "body " + string(body) + ": " + err.Error()
	}
	var raw map[string]any
	if json.Unmarshal(body, &raw) == nil && len(raw) != 3 && problem == "" {
		problem = "body has fields other than hostname, ip_address, interface: " + string(body)
	}
	tr.mu.Lock()
	n := len(tr.got) + len(tr.bad) + 1
	if problem != "" {
		tr.bad = append(tr.bad, problem)
	} else {
		tr.got = append(tr.got, info)
	}
	tr.mu.Unlock()
	tr.seen <- struct{}{}
	if problem != "" {
		http.Error(w, `{"error":"`+problem+`"}`, http.StatusBadRequest)
		return
	}
	if tr.fail != nil && tr.fail(n) {
		http.Error(w, `{"error":"down for a test"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"status":"registered","timestamp":"` + time.Now().UTC().Format(time.RFC3339) + `"}`))
}

// wait waits for n more requests.
func (tr *tracker) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-tr.seen:
		case <-time.After(2 * time.Minute):
			t.Fatalf("the server got no request within 2 minutes")
		}
	}
}

func (tr *tracker) requests() ([]Info, []string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]Info(nil), tr.got...), append([]string(nil), tr.bad...)
}

func quietLogger(buf *syncBuffer) *slog.Logger {
	if buf == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(buf, nil))
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fixedAddress returns an Address function that answers from a variable
// the test may change.
type fixedAddress struct {
	mu  sync.Mutex
	ip  string
	err error
}

func (f *fixedAddress) set(ip string, err error) {
	f.mu.Lock()
	f.ip, f.err = ip, err
	f.mu.Unlock()
}

func (f *fixedAddress) get(string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ip, f.err
}

func start(t *testing.T, o Options) (cancel func(), done <-chan error) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	finished := make(chan struct{})
	go func() { ch <- Run(ctx, o); close(finished) }()
	t.Cleanup(func() {
		stop()
		select {
		case <-finished:
		case <-time.After(time.Minute):
			t.Error("Run did not return within a minute of its context ending")
		}
	})
	return stop, ch
}

func TestRegistersTheDocumentedRequestEveryInterval(t *testing.T) {
	tr, srv := newTracker(t, "s3cret", nil)
	addr := &fixedAddress{ip: "192.0.2.7"}
	cancel, done := start(t, Options{
		API: srv.URL + "/", Interface: "eth9", Interval: 20 * time.Millisecond, Retry: 10 * time.Millisecond,
		Token: "s3cret", Logger: quietLogger(nil), Hostname: func() string { return "web-01" }, Address: addr.get,
	})
	tr.wait(t, 3)
	// An address change is registered at the next tick.
	addr.set("192.0.2.8", nil)
	for {
		tr.wait(t, 1)
		got, _ := tr.requests()
		if got[len(got)-1].IPAddress == "192.0.2.8" {
			break
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run did not stop")
	}
	got, bad := tr.requests()
	if len(bad) > 0 {
		t.Fatalf("requests that are not the tracker's: %q", bad)
	}
	if want := (Info{Hostname: "web-01", IPAddress: "192.0.2.7", Interface: "eth9"}); got[0] != want {
		t.Errorf("first registration %+v, want %+v", got[0], want)
	}
}

func TestFirstRegistrationIsTriedThreeTimes(t *testing.T) {
	tr, srv := newTracker(t, "", func(int) bool { return true })
	err := Run(context.Background(), Options{
		API: srv.URL, Interface: "eth0", Interval: time.Hour, Retry: 5 * time.Millisecond,
		Logger: quietLogger(nil), Address: (&fixedAddress{ip: "192.0.2.1"}).get,
	})
	if err == nil || !strings.Contains(err.Error(), "failed 3 times") || !strings.Contains(err.Error(), "status 500") {
		t.Fatalf("Run = %v, want the first registration to fail 3 times with status 500", err)
	}
	got, bad := tr.requests()
	if len(got) != FirstAttempts || len(bad) != 0 {
		t.Errorf("server saw %d good and %d bad requests (%q), want %d good", len(got), len(bad), bad, FirstAttempts)
	}
}

func TestUnreachableServerGivesUp(t *testing.T) {
	_, srv := newTracker(t, "", nil)
	url := srv.URL
	srv.Close()
	err := Run(context.Background(), Options{
		API: url, Interface: "eth0", Retry: time.Millisecond,
		Logger: quietLogger(nil), Address: (&fixedAddress{ip: "192.0.2.1"}).get,
	})
	if err == nil || !strings.Contains(err.Error(), "failed 3 times") {
		t.Fatalf("Run = %v, want it to give up", err)
	}
}

func TestMissingTokenIsExplained(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
	}))
	t.Cleanup(srv.Close)
	err := Run(context.Background(), Options{
		API: srv.URL, Interface: "eth0", Retry: time.Millisecond,
		Logger: quietLogger(nil), Address: (&fixedAddress{ip: "192.0.2.1"}).get,
	})
	if err == nil || !strings.Contains(err.Error(), "--token") {
		t.Fatalf("Run = %v, want an error that names --token", err)
	}
}

// Once registered, failures are logged and the next tick tries again.
func TestLaterFailuresAreLoggedAndSurvived(t *testing.T) {
	tr, srv := newTracker(t, "", func(n int) bool { return n == 2 || n == 3 })
	var log syncBuffer
	start(t, Options{
		API: srv.URL, Interface: "eth0", Interval: 10 * time.Millisecond, Retry: time.Hour,
		Logger: quietLogger(&log), Address: (&fixedAddress{ip: "192.0.2.1"}).get,
	})
	tr.wait(t, 5)
	if !strings.Contains(log.String(), "registration failed; trying again at the next interval") {
		t.Errorf("the failures were not logged:\n%s", log.String())
	}
}

// A missing interface is waited for, and the waiting does not use up the
// first registration's attempts.
func TestWaitsForTheInterface(t *testing.T) {
	tr, srv := newTracker(t, "", nil)
	addr := &fixedAddress{err: errors.New("interface eth0 not found")}
	var log syncBuffer
	_, done := start(t, Options{
		API: srv.URL, Interface: "eth0", Interval: time.Hour, Retry: time.Millisecond,
		Logger: quietLogger(&log), Address: addr.get,
	})
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(log.String(), "waiting for the interface") {
		if time.Now().After(deadline) {
			t.Fatalf("no waiting message:\n%s", log.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Many retry periods pass without a request.
	time.Sleep(50 * time.Millisecond)
	if got, bad := tr.requests(); len(got)+len(bad) != 0 {
		t.Fatalf("registered without an address: %v %q", got, bad)
	}
	select {
	case err := <-done:
		t.Fatalf("Run returned while waiting for the interface: %v", err)
	default:
	}
	addr.set("192.0.2.9", nil)
	tr.wait(t, 1)
	if got, _ := tr.requests(); got[0].IPAddress != "192.0.2.9" {
		t.Errorf("registered %+v", got[0])
	}
}

func TestInterfaceIPv4(t *testing.T) {
	if _, err := InterfaceIPv4("no-such-if0"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("missing interface: %v", err)
	}
	// lo has only loopback addresses, which are never registered.
	if ip, err := InterfaceIPv4("lo"); err == nil || !strings.Contains(err.Error(), "no IPv4 address") {
		t.Errorf("lo: %q, %v; want no IPv4 address", ip, err)
	}
}

func TestBadOptions(t *testing.T) {
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{API: "ftp://x", Interface: "eth0"}, "http:// or https://"},
		{Options{API: "http://", Interface: "eth0"}, "no host"},
		{Options{API: "monitor:8080", Interface: "eth0"}, "http:// or https://"},
		{Options{API: "http://m:1/?a=b", Interface: "eth0"}, "base URL"},
		{Options{API: "http://m:1"}, "--interface"},
	} {
		err := Run(context.Background(), c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Run(%+v) = %v, want an error with %q", c.o, err, c.want)
		}
	}
}

func TestParseSeconds(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"30": 30 * time.Second, "5": 5 * time.Second, "1s": time.Second, "500ms": 500 * time.Millisecond, "2m": 2 * time.Minute,
	} {
		if got, err := ParseSeconds(in); err != nil || got != want {
			t.Errorf("ParseSeconds(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-3", "abc", "1.5", "0s", "99999999999999999"} {
		if got, err := ParseSeconds(in); err == nil {
			t.Errorf("ParseSeconds(%q) = %v, want an error", in, got)
		}
	}
}

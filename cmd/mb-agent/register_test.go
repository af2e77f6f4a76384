package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mbvm/mb/internal/testenv"
)

// TestRegisterProcess runs `mb-agent register` with the tracker client's
// single-dash flags against a server, and stops it with SIGTERM.
func TestRegisterProcess(t *testing.T) {
	iface, ip := hostIPv4Interface()
	if iface == "" {
		testenv.Need(t, "a network interface with an IPv4 address other than loopback")
	}
	bodies := make(chan map[string]string, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]string
		data, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/api/register" || json.Unmarshal(data, &m) != nil {
			t.Errorf("unexpected request %s %s %q", r.Method, r.URL.Path, data)
		}
		if r.Header.Get("Authorization") != "Bearer tok" {
			t.Errorf("authorization %q", r.Header.Get("Authorization"))
		}
		bodies <- m
		_, _ = w.Write([]byte(`{"status":"registered","timestamp":"2026-11-26T08:00:00Z"}`))
	}))
	t.Cleanup(srv.Close)
	c := startChildEnv(t, []string{"MB_REGISTER_TOKEN=tok"}, "register", "-api", srv.URL, "-interface", iface, "-interval", "1", "-retry", "1", "-verbose")
	for i := range 2 {
		select {
		case m := <-bodies:
			if m["ip_address"] != ip || m["interface"] != iface || m["hostname"] == "" {
				t.Errorf("registration %d: %v, want %s on %s", i, m, ip, iface)
			}
		case <-c.done:
			t.Fatalf("mb-agent register exited: %v\n%s", c.err, c.log())
		case <-time.After(2 * time.Minute):
			t.Fatalf("no registration within 2 minutes:\n%s", c.log())
		}
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := c.wait(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0:\n%s", code, c.log())
	}
	if !strings.Contains(c.log(), "stopping") {
		t.Errorf("no clean stop in the log:\n%s", c.log())
	}
}

func TestRegisterGivesUpWithAClearMessage(t *testing.T) {
	iface, _ := hostIPv4Interface()
	if iface == "" {
		testenv.Need(t, "a network interface with an IPv4 address other than loopback")
	}
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c := startChild(t, "register", "--api", url, "--interface", iface, "--retry", "10ms")
	if code := c.wait(t); code != 1 || !strings.Contains(c.log(), "failed 3 times") {
		t.Fatalf("exit %d, want 1 and a message that the registration failed 3 times:\n%s", code, c.log())
	}
}

func TestRegisterRejectsBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"register"}, "--api is required"},
		{[]string{"register", "--api", "monitor:8080"}, "http:// or https://"},
		{[]string{"register", "--api", "http://m", "--interval", "abc"}, "neither whole seconds nor a duration"},
		{[]string{"register", "--api", "http://m", "-retry", "0"}, "positive"},
		{[]string{"register", "--api", "http://m", "extra"}, "unexpected argument"},
	} {
		var errb strings.Builder
		if got := runRegister(c.args[1:], &errb); got != 2 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", c.args, got, errb.String(), c.want)
		}
	}
}

package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func itoa(i int) string { return strconv.Itoa(i) }

// Bad names, a bad spec and an unknown VM each give the right error and
// exit code on the CLI, and the right status on the API.
func TestErrors(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"start", "Bad_Name", "--backend", "fake"}, 2, "invalid VM name"},
		{[]string{"start", "../etc", "--backend", "fake"}, 2, "invalid VM name"},
		{[]string{"stop", "nosuch"}, 1, "no VM named"},
		{[]string{"info", "nosuch"}, 1, "no VM named"},
		{[]string{"rm", "nosuch"}, 1, "no VM named"},
		{[]string{"start", "x", "--memory", "lots"}, 2, "--memory"},
		{[]string{"start", "x", "--backend", "fake", "--cpus", "0"}, 2, "--cpus"},
		{[]string{"stop", "x", "--timeout", "-3s"}, 2, "--timeout -3s: must not be negative"},
		{[]string{"start", "x", "--backend", "fake", "--ssh-port", "-5"}, 2, "ssh_port"},
		{[]string{"start", "x", "--kernel", "/nonexistent/vmlinuz"}, 2, "kernel /nonexistent/vmlinuz: no such file"},
		{[]string{"start", "x", "--restart", "sometimes"}, 2, "restart"},
		{[]string{"start"}, 2, "VM name"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"ls", "--frob"}, 2, "unknown flag"},
		{[]string{"exec", "x"}, 2, "command"},
	}
	for _, c := range cases {
		r := e.mb(c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Errorf("mb %s: %s\nwant exit %d and %q on stderr", strings.Join(c.args, " "), r, c.code, c.want)
		}
		if n := strings.Count(strings.TrimSpace(r.stderr), "\n"); r.code != 0 && n > 0 && c.args[0] != "start" {
			t.Errorf("mb %s: error is %d lines, want one: %q", strings.Join(c.args, " "), n+1, r.stderr)
		}
	}
	bad := filepath.Join(e.home, "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: y\ncpus: many\nbogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := e.mb("start", "y", "-f", bad); r.code != 2 || !strings.Contains(r.stderr, "bad spec") {
		t.Errorf("mb start -f bad.yaml: %s; want exit 2 and bad spec", r)
	}

	// Files named in a spec file are taken relative to that file.
	specDir := filepath.Join(e.home, "specdir")
	if err := os.MkdirAll(specDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(specDir, "vmlinuz"), []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	relSpec := filepath.Join(specDir, "rel.yaml")
	if err := os.WriteFile(relSpec, []byte("backend: fake\nkernel: vmlinuz\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.ok("start", "rel", "-f", relSpec)
	if v := e.vm("rel"); v.Spec["kernel"] != filepath.Join(specDir, "vmlinuz") {
		t.Errorf("kernel from a spec file beside it: %v, want %s", v.Spec["kernel"], filepath.Join(specDir, "vmlinuz"))
	}

	// The API's statuses.
	e.ok("start", "run", "--backend", "fake")
	apiCases := []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"POST", "/v1/vms", "name: z\ncpus: many\n", http.StatusBadRequest, "bad spec"},
		{"POST", "/v1/vms", `{"name": "Z!"}`, http.StatusBadRequest, "invalid VM name"},
		{"POST", "/v1/vms", "name: k\nkernel: /nonexistent/vmlinuz\n", http.StatusBadRequest, "no such file"},
		{"POST", "/v1/vms", "name: k\nkernel: vmlinuz\n", http.StatusBadRequest, "absolute path"},
		{"POST", "/v1/vms", `{"name": "run", "backend": "fake"}`, http.StatusConflict, "already exists"},
		{"GET", "/v1/vms/nosuch", "", http.StatusNotFound, "no VM named"},
		{"GET", "/v1/vms/Bad_Name", "", http.StatusBadRequest, "invalid VM name"},
		{"DELETE", "/v1/vms/run", "", http.StatusConflict, "running"},
		{"POST", "/v1/vms/run/exec", `{"argv":["true"]}`, http.StatusConflict, "no guest agent"},
		{"GET", "/v1/vms/run/metrics", "", http.StatusConflict, "no guest agent"},
		{"GET", "/v1/nothing", "", http.StatusNotFound, "/v1/"},
		{"PUT", "/v1/vms", "", http.StatusMethodNotAllowed, "use GET, POST"},
	}
	for _, c := range apiCases {
		status, body := e.httpCall(c.method, c.path, c.body)
		var er struct{ Error string }
		_ = json.Unmarshal([]byte(body), &er)
		if status != c.status || !strings.Contains(er.Error, c.want) {
			t.Errorf("%s %s: %d %s; want %d with an error containing %q", c.method, c.path, status, body, c.status, c.want)
		}
	}
	// mb console on a VM without a console socket fails clearly.
	if r := e.mb("console", "run"); r.code != 1 || !strings.Contains(r.stderr, "has no console") || !strings.Contains(r.stderr, "mb logs run") {
		t.Errorf("mb console on the fake backend: %s; want exit 1, has no console, and a pointer to mb logs", r)
	}
	// mb exec on a VM without an agent fails clearly.
	if r := e.mb("exec", "run", "--", "true"); r.code != 1 || !strings.Contains(r.stderr, "no guest agent") {
		t.Errorf("mb exec on the fake backend: %s; want exit 1 and no guest agent", r)
	}
}

// A $MB_HOME or name too long for a unix socket path is refused at create,
// saying how long a name may be; a name of that length works.
func TestSocketPathLimit(t *testing.T) {
	e := newEnv(t)
	long := e.home + "/" + strings.Repeat("h", 40-len(e.home)-1)
	if err := os.MkdirAll(long, 0o700); err != nil {
		t.Fatal(err)
	}
	e.home = long
	r := e.mb("start", strings.Repeat("n", 63), "--backend", "fake")
	m := regexp.MustCompile(`at most (\d+) characters`).FindStringSubmatch(r.stderr)
	if r.code != 1 || m == nil {
		t.Fatalf("mb start with a 63-character name under a 40-byte MB_HOME: %s; want exit 1 saying how long a name may be", r)
	}
	n, _ := strconv.Atoi(m[1])
	if n < 1 || n >= 63 {
		t.Fatalf("allowed name length %d", n)
	}
	if r := e.mb("start", strings.Repeat("n", n+1), "--backend", "fake"); r.code != 1 || !strings.Contains(r.stderr, "at most") {
		t.Errorf("a name one over the limit: %s", r)
	}
	e.ok("start", strings.Repeat("n", n), "--backend", "fake")
}

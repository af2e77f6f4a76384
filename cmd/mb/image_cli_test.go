package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/internal/testenv"
	"github.com/mbvm/mb/vm/image"
)

// makeQcow2 makes a small real qcow2 image with data in it.
func makeQcow2(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"qemu-img", "qemu-io"} {
		testenv.Tool(t, tool, "qemu-utils")
	}
	src := filepath.Join(t.TempDir(), "base.qcow2")
	for _, args := range [][]string{
		{"qemu-img", "create", "-q", "-f", "qcow2", src, "32M"},
		{"qemu-io", "-f", "qcow2", "-c", "write -P 0x42 0 1M", src},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	return src
}

// mb image goes through the daemon: pull, import, ls and rm.
func TestImageCommands(t *testing.T) {
	src := makeQcow2(t)
	e := newEnv(t)

	out := e.ok("image", "import", src, "--name", "deb", "--agent", "qemu-ga")
	if !strings.HasPrefix(out, "deb\tqcow2\t") {
		t.Fatalf("import: %q", out)
	}
	out = e.ok("image", "pull", "file://"+src, "--name", "deb2")
	if !strings.HasPrefix(out, "deb2\tqcow2\tsha256:") {
		t.Fatalf("pull: %q", out)
	}
	// A VM using deb (fake: it needs no real image to exist).
	e.ok("start", "web", "--backend", "fake", "--image", "deb", "--no-wait")

	out = e.ok("image", "ls")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || !strings.HasPrefix(lines[1], "deb ") || !strings.Contains(lines[1], "qcow2") || !strings.HasSuffix(lines[1], "web") {
		t.Errorf("mb image ls:\n%s", out)
	}
	out = e.ok("image", "ls", "--json")
	var entries []api.Image
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("ls --json: %v\n%s", err, out)
	}
	if len(entries) != 2 || entries[0].Name != "deb" || entries[0].Format != "qcow2" || entries[0].SHA256 != entries[1].SHA256 ||
		len(entries[0].UsedBy) != 1 || entries[0].UsedBy[0] != "web" || len(entries[1].UsedBy) != 0 {
		t.Errorf("ls --json: %+v", entries)
	}

	if r := e.mb("image", "rm", "deb"); r.code == 0 || !strings.Contains(r.stderr, "web") {
		t.Errorf("rm of an image in use: %v; want a refusal naming the VM", r)
	}
	if out := e.ok("image", "rm", "deb2"); strings.TrimSpace(out) != "deb2" {
		t.Errorf("rm deb2: %q", out)
	}
	if r := e.mb("image", "pull", "file://"+src, "--name", "bad", "--sha256", strings.Repeat("0", 64)); r.code == 0 || !strings.Contains(r.stderr, "mismatch") {
		t.Errorf("pull with a wrong digest: %v", r)
	}
	if _, err := os.Stat(layout.ImageDir(e.home, "bad")); !os.IsNotExist(err) {
		t.Errorf("a wrong-digest pull left %s: %v", layout.ImageDir(e.home, "bad"), err)
	}
	if r := e.mb("image", "rm", "../../decoy"); r.code == 0 || !strings.Contains(r.stderr, "invalid image name") {
		t.Errorf("rm ../../decoy: %v", r)
	}

	// The API answers with codes.
	status, body := e.httpCall("DELETE", "/v1/images/nope", "")
	var apiErr api.Error
	_ = json.Unmarshal([]byte(body), &apiErr)
	if status != http.StatusNotFound || apiErr.Code != api.CodeNotFound {
		t.Errorf("DELETE of a missing image: %d %s", status, body)
	}
	status, body = e.httpCall("DELETE", "/v1/images/deb", "")
	_ = json.Unmarshal([]byte(body), &apiErr)
	if status != http.StatusConflict || apiErr.Code != api.CodeInUse {
		t.Errorf("DELETE of an image in use: %d %s", status, body)
	}
	status, body = e.httpCall("POST", "/v1/images", `{"url": "file:///x.qcow2", "name": "../../decoy"}`)
	_ = json.Unmarshal([]byte(body), &apiErr)
	if status != http.StatusBadRequest || apiErr.Code != api.CodeBadRequest {
		t.Errorf("pull named ../../decoy: %d %s", status, body)
	}
	status, body = e.httpCall("POST", "/v1/vms", `{"name": "decoy", "image": "../../decoy"}`)
	if status != http.StatusBadRequest || !strings.Contains(body, "invalid image name") {
		t.Errorf("create with image ../../decoy: %d %s", status, body)
	}
	status, body = e.httpCall("POST", "/v1/images", `{"disk": "relative.qcow2"}`)
	_ = json.Unmarshal([]byte(body), &apiErr)
	if status != http.StatusBadRequest || apiErr.Code != api.CodeBadRequest {
		t.Errorf("import of a relative path: %d %s", status, body)
	}
}

// An image cannot be removed while a VM is being created or started from
// it: both hold the image's lock shared, removal takes it exclusively. The
// test holds the shared lock itself, as a VM start does.
func TestImageRemoveWaitsForImageUsers(t *testing.T) {
	src := makeQcow2(t)
	e := newEnv(t)
	e.ok("image", "import", src, "--name", "deb")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	release, err := image.Share(ctx, e.home, "deb")
	if err != nil {
		t.Fatal(err)
	}
	// The removal cannot proceed while the lock is shared; the client gives
	// up after a while, which cancels it.
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", filepath.Join(e.home, "mb.sock"))
	}}, Timeout: 2 * time.Second}
	req, err := http.NewRequest("DELETE", "http://mb/v1/images/deb", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("DELETE while a VM uses the image answered %s", resp.Status)
	}
	if _, err := image.Load(e.home, "deb"); err != nil {
		t.Errorf("the image went away while its lock was shared: %v", err)
	}
	release()
	e.ok("image", "rm", "deb")
	if _, err := os.Stat(layout.ImageDir(e.home, "deb")); !os.IsNotExist(err) {
		t.Errorf("deb still there after rm: %v", err)
	}
}

// A VM does not start while its image is being changed (pulled, imported,
// removed, or rebuilt by make image): the start waits for the image's lock.
// The test holds the lock exclusively, as those do.
func TestStartWaitsForImageChange(t *testing.T) {
	src := makeQcow2(t)
	e := newEnv(t)
	e.ok("image", "import", src, "--name", "deb")
	status, body := e.httpCall("POST", "/v1/vms", `{"name": "w", "image": "deb"}`)
	if status != http.StatusCreated {
		t.Fatalf("create: %d %s", status, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lock, err := image.Lock(ctx, e.home, "deb")
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", filepath.Join(e.home, "mb.sock"))
	}}, Timeout: 2 * time.Second}
	req, err := http.NewRequest("POST", "http://mb/v1/vms/w/start", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("start while the image is locked answered %s", resp.Status)
	}
	if _, err := os.Stat(filepath.Join(layout.VMDir(e.home, "w"), "vmhost.log")); err == nil {
		t.Error("a vmhost was started while the image was locked")
	}
}

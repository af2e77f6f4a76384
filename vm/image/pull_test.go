package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mbvm/mb/vm/disk"
)

var (
	fmtSscanf = fmt.Sscanf
	itoa      = strconv.Itoa
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func pullOpts(url string) PullOptions {
	return PullOptions{URL: url, Logger: quietLogger(), RetryBackoff: 10 * time.Millisecond}
}

func TestPullHTTP(t *testing.T) {
	data := qcow2Bytes(t)
	srv := newImageServer(t, data)
	mbHome := t.TempDir()
	o := pullOpts(srv.URL + "/cloud/debian-12-generic.qcow2")
	o.SHA256 = strings.ToUpper(sha(data))
	m, err := Pull(testCtx(t), mbHome, o)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "debian-12-generic" || m.Format != "qcow2" || m.SHA256 != sha(data) || m.Source != o.URL || m.Disk != "disk.qcow2" {
		t.Errorf("manifest %+v", m)
	}
	got, err := os.ReadFile(m.Path(m.Disk))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Error("the pulled disk differs from the served one")
	}
	if fi, _ := os.Stat(m.Path(m.Disk)); fi.Mode().Perm() != 0o444 {
		t.Errorf("base image mode %v, want read-only 0444", fi.Mode().Perm())
	}
	again, err := Load(mbHome, "debian-12-generic")
	if err != nil || again.SHA256 != sha(data) {
		t.Errorf("Load after pull: %+v, %v", again, err)
	}
	assertNoLeftovers(t, mbHome, "debian-12-generic")
}

func TestPullRecordsDigestWithoutExpectation(t *testing.T) {
	data := qcow2Bytes(t)
	srv := newImageServer(t, data)
	m, err := Pull(testCtx(t), t.TempDir(), pullOpts(srv.URL+"/x.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	if m.SHA256 != sha(data) {
		t.Errorf("recorded digest %s, want %s", m.SHA256, sha(data))
	}
}

func TestPullResumesWithRange(t *testing.T) {
	data := qcow2Bytes(t)
	srv := newImageServer(t, data)
	srv.cut = 1
	mbHome := t.TempDir()
	o := pullOpts(srv.URL + "/img.qcow2")
	o.SHA256 = sha(data)
	m, err := Pull(testCtx(t), mbHome, o)
	if err != nil {
		t.Fatal(err)
	}
	reqs := srv.rangeRequests()
	if len(reqs) != 2 || reqs[0] != "" || reqs[1] != "bytes="+itoa(len(data)/2)+"-" {
		t.Errorf("requests' Range headers %q, want a full GET then bytes=%d-", reqs, len(data)/2)
	}
	if m.SHA256 != sha(data) {
		t.Error("resumed download has the wrong digest")
	}
}

// A server that stops sending in the middle of the body, connection open,
// must not hang the pull: the idle timeout ends the transfer and the pull
// resumes it with a Range request.
func TestPullResumesAfterStall(t *testing.T) {
	data := qcow2Bytes(t)
	srv := newImageServer(t, data)
	srv.stall = 1
	ctx, cancel := context.WithTimeout(testCtx(t), 30*time.Second)
	defer cancel()
	o := pullOpts(srv.URL + "/img.qcow2")
	o.SHA256 = sha(data)
	o.IdleTimeout = 300 * time.Millisecond
	m, err := Pull(ctx, t.TempDir(), o)
	if err != nil {
		t.Fatalf("pull from a stalling server: %v", err)
	}
	reqs := srv.rangeRequests()
	if len(reqs) != 2 || reqs[1] != "bytes="+itoa(len(data)/2)+"-" {
		t.Errorf("requests' Range headers %q, want a full GET then bytes=%d-", reqs, len(data)/2)
	}
	if m.SHA256 != sha(data) {
		t.Error("resumed download has the wrong digest")
	}
}

func TestPullRestartsWhenServerCannotResume(t *testing.T) {
	data := qcow2Bytes(t)
	srv := newImageServer(t, data)
	srv.cut, srv.noRange = 1, true
	o := pullOpts(srv.URL + "/img.qcow2")
	o.SHA256 = sha(data)
	if _, err := Pull(testCtx(t), t.TempDir(), o); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.rangeRequests()); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}

func TestPullTruncatedDownload(t *testing.T) {
	data := qcow2Bytes(t)
	srv := newImageServer(t, data)
	srv.cut = 100
	mbHome := t.TempDir()
	o := pullOpts(srv.URL + "/img.qcow2")
	o.Retries = 2
	_, err := Pull(testCtx(t), mbHome, o)
	if err == nil || !strings.Contains(err.Error(), "truncated") || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want a truncated-download error", err)
	}
	if n := len(srv.rangeRequests()); n != 3 {
		t.Errorf("%d requests, want 3 (the first and 2 retries)", n)
	}
	assertNoLeftovers(t, mbHome)
}

func TestPullWrongDigestRemovesDownload(t *testing.T) {
	data := qcow2Bytes(t)
	srv := newImageServer(t, data)
	mbHome := t.TempDir()
	o := pullOpts(srv.URL + "/img.qcow2")
	o.SHA256 = strings.Repeat("ab", 32)
	_, err := Pull(testCtx(t), mbHome, o)
	if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), sha(data)) {
		t.Fatalf("err = %v, want ErrDigestMismatch naming the computed digest", err)
	}
	assertNoLeftovers(t, mbHome)
	if _, err := Load(mbHome, "img"); err == nil {
		t.Error("an image with a wrong digest was kept")
	}
}

func TestPullNotAnImage(t *testing.T) {
	srv := newImageServer(t, []byte("<!DOCTYPE html>\n<html><body>Download page</body></html>\n"))
	mbHome := t.TempDir()
	_, err := Pull(testCtx(t), mbHome, pullOpts(srv.URL+"/download.html"))
	if !errors.Is(err, disk.ErrNotImage) || !strings.Contains(err.Error(), "web page") {
		t.Fatalf("err = %v, want ErrNotImage naming a web page", err)
	}
	assertNoLeftovers(t, mbHome)
}

func TestPullHTTPErrors(t *testing.T) {
	data := qcow2Bytes(t)
	srv := newImageServer(t, data)
	mbHome := t.TempDir()
	// http.ServeContent answers 404 for nothing; use a path the test server
	// itself cannot serve: a closed server.
	srv.Close()
	o := pullOpts(srv.URL + "/img.qcow2")
	o.Retries = 1
	if _, err := Pull(testCtx(t), mbHome, o); err == nil || !strings.Contains(err.Error(), "gave up") {
		t.Errorf("unreachable server: err = %v", err)
	}
	tests := []struct{ url, want string }{
		{"ftp://example.com/x.qcow2", "unsupported URL scheme"},
		{"debian.qcow2", "bad image URL"},
	}
	for _, tc := range tests {
		if _, err := Pull(testCtx(t), mbHome, pullOpts(tc.url)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.url, err, tc.want)
		}
	}
	// A host that does not exist fails at once (or, without a DNS server
	// to say so, after the retries).
	if _, err := Pull(testCtx(t), mbHome, pullOpts("http://no-such-host.invalid/x.qcow2")); err == nil ||
		!(strings.Contains(err.Error(), "check the host name") || strings.Contains(err.Error(), "gave up")) {
		t.Errorf("unknown host: err = %v", err)
	}
	o = pullOpts("file:///nonexistent/x.qcow2")
	o.SHA256 = "xyz"
	if _, err := Pull(testCtx(t), mbHome, o); err == nil || !strings.Contains(err.Error(), "64 hexadecimal") {
		t.Errorf("bad digest: err = %v", err)
	}
	assertNoLeftovers(t, mbHome)
}

func TestPull404(t *testing.T) {
	srv := newImageServer(t, nil)
	srv.Config.Handler = httpNotFound{}
	_, err := Pull(testCtx(t), t.TempDir(), pullOpts(srv.URL+"/missing.qcow2"))
	if err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "check the URL") {
		t.Errorf("err = %v, want a 404 naming the fix", err)
	}
}

func TestPullFileURL(t *testing.T) {
	data := qcow2Bytes(t)
	src := filepath.Join(t.TempDir(), "local.qcow2")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var bar bytes.Buffer
	o := pullOpts("file://" + src)
	o.Progress = &bar
	m, err := Pull(testCtx(t), t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "local" || m.SHA256 != sha(data) {
		t.Errorf("manifest %+v", m)
	}
	if !strings.Contains(bar.String(), "100.00%") || !strings.Contains(bar.String(), "MiB") {
		t.Errorf("progress bar %q: want a finished bar in bytes", bar.String())
	}
}

func TestPullSameImageTwiceAtOnce(t *testing.T) {
	data := qcow2Bytes(t)
	srv := newImageServer(t, data)
	srv.delay = 200 * time.Millisecond
	mbHome := t.TempDir()
	o := pullOpts(srv.URL + "/img.qcow2")
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = Pull(testCtx(t), mbHome, o)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Errorf("pull: %v", err)
		}
	}
	if n := len(srv.rangeRequests()); n != 1 {
		t.Errorf("the server saw %d downloads, want 1 (the second pull waits and finds the image)", n)
	}
	assertNoLeftovers(t, mbHome, "img")

	// Another source under the same name is refused.
	other := newImageServer(t, data)
	if _, err := Pull(testCtx(t), mbHome, pullOpts(other.URL+"/img.qcow2")); !errors.Is(err, ErrExists) {
		t.Errorf("err = %v, want ErrExists", err)
	}
}

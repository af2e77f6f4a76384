package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/internal/testenv"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// qcow2Bytes makes a real 16 MiB qcow2 image with data in it.
func qcow2Bytes(t *testing.T) []byte {
	t.Helper()
	for _, tool := range []string{"qemu-img", "qemu-io"} {
		testenv.Tool(t, tool, "qemu-utils")
	}
	p := filepath.Join(t.TempDir(), "src.qcow2")
	for _, args := range [][]string{
		{"qemu-img", "create", "-q", "-f", "qcow2", p, "16M"},
		{"qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 2M", p},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// imageServer serves one file over HTTP, with Range support, and can cut
// responses short to simulate a dropped connection.
type imageServer struct {
	*httptest.Server
	data []byte
	// cut is how many responses to cut at half their body.
	cut int
	// noRange makes the server ignore Range requests (always 200).
	noRange bool
	// delay holds each response back, to let concurrent pulls overlap.
	delay time.Duration
	// stall is how many responses to stop sending at half their body,
	// keeping the connection open, like a server that hangs.
	stall int
	quit  chan struct{}

	mu       sync.Mutex
	requests []string // the Range header of each request ("" for none)
}

func newImageServer(t *testing.T, data []byte) *imageServer {
	s := &imageServer{data: data, quit: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	t.Cleanup(func() { close(s.quit) }) // runs first: frees stalled handlers
	return s
}

func (s *imageServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r.Header.Get("Range"))
	cut := s.cut > 0
	if cut {
		s.cut--
	}
	stall := !cut && s.stall > 0
	if stall {
		s.stall--
		cut = true
	}
	s.mu.Unlock()
	time.Sleep(s.delay)
	if s.noRange {
		r.Header.Del("Range")
	}
	if !cut {
		w.Header().Set("ETag", `"v1"`)
		http.ServeContent(w, r, "disk.qcow2", time.Unix(1700000000, 0), bytes.NewReader(s.data))
		return
	}
	// A body cut at half: the client sees an unexpected EOF.
	start := 0
	if rng := r.Header.Get("Range"); rng != "" {
		var n int
		if _, err := fmtSscanf(rng, "bytes=%d-", &n); err == nil {
			start = n
		}
	}
	rest := s.data[start:]
	w.Header().Set("ETag", `"v1"`)
	w.Header().Set("Content-Length", itoa(len(rest)))
	if start > 0 {
		w.Header().Set("Content-Range", "bytes "+itoa(start)+"-"+itoa(len(s.data)-1)+"/"+itoa(len(s.data)))
		w.WriteHeader(http.StatusPartialContent)
	}
	_, _ = w.Write(rest[:len(rest)/2])
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	if stall {
		select {
		case <-r.Context().Done():
		case <-s.quit:
		}
	}
	panic(http.ErrAbortHandler)
}

func (s *imageServer) rangeRequests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

// assertNoLeftovers checks the image cache holds only the named images
// and lock files: no staging directories or partial downloads.
func assertNoLeftovers(t *testing.T, mbHome string, images ...string) {
	t.Helper()
	des, err := os.ReadDir(layout.ImagesDir(mbHome))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, i := range images {
		want[i] = true
	}
	for _, d := range des {
		if strings.HasSuffix(d.Name(), ".lock") {
			continue
		}
		if !want[d.Name()] {
			t.Errorf("left behind in the image cache: %s", d.Name())
		}
	}
}

type httpNotFound struct{}

func (httpNotFound) ServeHTTP(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }

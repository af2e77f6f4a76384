package service

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/mbvm/mb/monitor/notify/webhook"
	"github.com/mbvm/mb/monitor/store"
)

const childEnv = "MB_SERVICE_TEST_CHILD_DIR"

// TestKilledChild is run only as the child of TestOutboxSurvivesKill: it
// runs the service, makes a host cross a threshold, and waits to be
// killed.
func TestKilledChild(t *testing.T) {
	dir := os.Getenv(childEnv)
	if dir == "" {
		return
	}
	s, err := New(context.Background(), Options{ConfigPath: filepath.Join(dir, "monitor.yaml"), StateDir: filepath.Join(dir, "state"), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	go s.Run(context.Background())
	observeCPU(t, s.Engine(), "db-01", 10)
	observeCPU(t, s.Engine(), "db-01", 99)
	select {}
}

// TestOutboxSurvivesKill: the service is killed with SIGKILL while the
// webhook request is in flight (never answered); started again on the
// same state, it sends the notification, and the receiver gets it
// delivered exactly once, with the same message ID.
func TestOutboxSurvivesKill(t *testing.T) {
	var mu sync.Mutex
	var ids []string // message ID of every request
	delivered := 0
	first := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // so that a closed connection ends r.Context()
		mu.Lock()
		ids = append(ids, r.Header.Get(webhook.MessageIDHeader))
		n := len(ids)
		mu.Unlock()
		if n == 1 {
			close(first)
			<-r.Context().Done() // hold it until the sender dies
			return
		}
		mu.Lock()
		delivered++
		mu.Unlock()
	}))
	defer srv.Close()

	dir := t.TempDir()
	writeConfig(t, dir, webhookConfig(srv.URL+"/hook"))
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command(exe, "-test.run=^TestKilledChild$")
	child.Env = append(os.Environ(), childEnv+"="+dir)
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	<-first
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()

	s := start(t, dir, webhookConfig(srv.URL+"/hook"))
	waitFor(t, "the notification to be delivered after the restart", func() bool {
		items := outboxItems(t, s.Store())
		return len(items) == 1 && items[0].Status == store.StatusSent
	})
	s.stop()
	mu.Lock()
	defer mu.Unlock()
	if delivered != 1 || len(ids) != 2 || ids[0] == "" || ids[0] != ids[1] {
		t.Errorf("delivered %d times, message ids %q: want the one notification delivered once, after the attempt the kill cut short", delivered, ids)
	}
}

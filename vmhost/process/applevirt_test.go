package process

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"testing"

	"github.com/mbvm/mb/vm/spec"
)

// TestAppleVirtOffMacOS: vmhost asked for backend applevirt anywhere but
// macOS fails at once, saying what the backend needs and what to use.
func TestAppleVirtOffMacOS(t *testing.T) {
	if runtime.GOOS == "darwin" {
		t.Logf("on macOS the applevirt backend can start")
		return
	}
	sp := &spec.Spec{Name: "vm", Backend: "applevirt"}
	sp.SetDefaults()
	_, err := startBackend(context.Background(), t.TempDir(), t.TempDir(), sp, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "needs macOS") || !strings.Contains(err.Error(), "backend: qemu") {
		t.Fatalf("applevirt on %s: %v", runtime.GOOS, err)
	}
}

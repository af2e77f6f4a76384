package qemu

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/mbvm/mb/internal/layout"
)

// The automatic SSH port of the last start is reused when free, and
// replaced (and the new one remembered) when taken.
func TestAutoSSHPortRemembered(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	picked := 0
	pick := func() (int, error) { picked++; return 40000 + picked, nil }

	if p, err := autoSSHPort(log, dir, 1, pick); err != nil || p != 40001 {
		t.Fatalf("first start: port %d, %v; want a picked one", p, err)
	}
	rememberSSHPort(log, dir, 40001)
	if RememberedSSHPort(dir) != 40001 {
		t.Fatalf("remembered %d, want 40001", RememberedSSHPort(dir))
	}

	// Taken: a listener holds the remembered port.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	taken := l.Addr().(*net.TCPAddr).Port
	rememberSSHPort(log, dir, taken)
	if p, _ := autoSSHPort(log, dir, 1, pick); p == taken {
		t.Errorf("the remembered port %d is taken but was chosen again", taken)
	}
	// Free again: reused.
	l.Close()
	if p, _ := autoSSHPort(log, dir, 1, pick); p != taken {
		t.Errorf("the remembered port %d is free but %d was chosen", taken, p)
	}
	// A later attempt (the port was lost in a race) picks anew.
	if p, _ := autoSSHPort(log, dir, 2, pick); p == taken {
		t.Errorf("attempt 2 reused the remembered port")
	}
	os.WriteFile(filepath.Join(dir, layout.SSHPortState), []byte("junk"), 0o600)
	if RememberedSSHPort(dir) != 0 {
		t.Errorf("a junk state file gave a port")
	}
}

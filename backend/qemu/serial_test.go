package qemu

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mbvm/mb/internal/layout"
)

// TestBoundLog bounds a log held open with O_APPEND, as QEMU holds it:
// over the cap it moves to serial.log.1, and the writer's next line lands
// at the start of the emptied file.
func TestBoundLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), layout.SerialLog)
	if err := boundLog(path); err != nil {
		t.Fatalf("missing log: %v", err)
	}
	w, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.WriteString("short")
	if err := boundLog(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".1"); err == nil {
		t.Error("a log under the cap was rotated")
	}
	w.WriteString(strings.Repeat("x", serialLogCap))
	if err := boundLog(path); err != nil {
		t.Fatal(err)
	}
	w.WriteString("next")
	if got, _ := os.ReadFile(path); string(got) != "next" {
		t.Errorf("log after rotation = %q, want %q", got, "next")
	}
	if old, _ := os.ReadFile(path + ".1"); len(old) != serialLogCap+len("short") {
		t.Errorf("serial.log.1 has %d bytes, want %d", len(old), serialLogCap+len("short"))
	}
}

func TestTailWriter(t *testing.T) {
	var logs bytes.Buffer
	w := newTailWriter(slog.New(slog.NewTextHandler(&logs, nil)), 2)
	w.Write([]byte("qemu-system-x86_64: first\nsecond\nthi"))
	w.Write([]byte("rd: Could not set up host forwarding rule 'tcp:127.0.0.1:22-:22'\n"))
	if got := w.String(); got != "second; third: Could not set up host forwarding rule 'tcp:127.0.0.1:22-:22'" {
		t.Errorf("tail = %q", got)
	}
	if !w.contains(hostFwdFailure) || w.contains("first") {
		t.Error("contains looks at the wrong lines")
	}
	if !strings.Contains(logs.String(), "qemu-system-x86_64: first") {
		t.Errorf("lines not logged: %s", logs.String())
	}
	if newTailWriter(slog.New(slog.DiscardHandler), 2).String() == "" {
		t.Error("an empty tail should say there was no output")
	}
}

package qemu

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRotateLog(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "serial.log")
	if err := rotateLog(path, 10); err != nil {
		t.Fatalf("missing log: %v", err)
	}
	os.WriteFile(path, []byte("short"), 0o600)
	if err := rotateLog(path, 10); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".1"); err == nil {
		t.Error("a log under the cap was rotated")
	}
	os.WriteFile(path, []byte("a crash log over the cap"), 0o600)
	if err := rotateLog(path, 10); err != nil {
		t.Fatal(err)
	}
	if old, _ := os.ReadFile(path + ".1"); string(old) != "a crash log over the cap" {
		t.Errorf("serial.log.1 = %q", old)
	}
	if _, err := os.Stat(path); err == nil {
		t.Error("serial.log still there after rotation")
	}
}

// TestTrimLog trims a log held open with O_APPEND, as QEMU holds it: the
// writer's next line lands at the start of the emptied file.
func TestTrimLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "serial.log")
	w, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.WriteString(strings.Repeat("x", 100))
	if err := trimLog(path, 50); err != nil {
		t.Fatal(err)
	}
	w.WriteString("next")
	if got, _ := os.ReadFile(path); string(got) != "next" {
		t.Errorf("log after trim = %q, want %q", got, "next")
	}
	if old, _ := os.ReadFile(path + ".1"); len(old) != 100 {
		t.Errorf("serial.log.1 has %d bytes, want 100", len(old))
	}
	if err := trimLog(path, 50); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "next" {
		t.Errorf("a log under the cap was trimmed: %q", got)
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

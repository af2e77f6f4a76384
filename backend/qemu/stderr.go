package qemu

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
)

// tailWriter receives QEMU's stderr: it logs every line and keeps the last
// few for error messages.
type tailWriter struct {
	log *slog.Logger
	max int

	mu      sync.Mutex
	partial []byte
	lines   []string
}

func newTailWriter(log *slog.Logger, maxLines int) *tailWriter {
	return &tailWriter{log: log, max: maxLines}
}

// Write implements io.Writer.
func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.addLine(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	if len(w.partial) > 4096 { // a runaway line without newline
		w.addLine(string(w.partial))
		w.partial = nil
	}
	return len(p), nil
}

func (w *tailWriter) addLine(line string) {
	line = strings.TrimRight(line, "\r")
	if line == "" {
		return
	}
	w.log.Warn("qemu: " + line)
	w.lines = append(w.lines, line)
	if len(w.lines) > w.max {
		w.lines = w.lines[len(w.lines)-w.max:]
	}
}

// String returns the kept lines, joined, or a hint when there are none.
func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	lines := w.lines
	if len(w.partial) > 0 {
		lines = append(lines[:len(lines):len(lines)], string(w.partial))
	}
	if len(lines) == 0 {
		return "(no output on stderr)"
	}
	return strings.Join(lines, "; ")
}

// contains reports whether any kept line contains s.
func (w *tailWriter) contains(s string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return bytes.Contains(w.partial, []byte(s))
}

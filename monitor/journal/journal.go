// Package journal writes the monitor's message journal: one JSON object per
// line in hbd's entry shape (timestamp, datetime, source_ip, source_port,
// message), rotated by size into numbered backups (FILE.1 is the newest).
// Files are created 0600 in a 0700 directory and never through a symlink.
package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Entry is one journal line.
type Entry struct {
	// Timestamp is Unix time in seconds (with milliseconds).
	Timestamp float64 `json:"timestamp"`
	// Datetime is the same time in UTC, as 2006-01-02T15:04:05.
	Datetime string `json:"datetime"`
	// SourceIP and SourcePort are where the message came from (empty and 0
	// for messages of local origin).
	SourceIP   string `json:"source_ip"`
	SourcePort int    `json:"source_port"`
	// Message is the message itself.
	Message any `json:"message"`
}

// DatetimeLayout is the layout of Entry.Datetime.
const DatetimeLayout = "2006-01-02T15:04:05"

// NewEntry makes an entry for a message at t from source ("ip", "ip:port"
// or "").
func NewEntry(t time.Time, source string, message any) Entry {
	e := Entry{
		Timestamp: float64(t.UnixMilli()) / 1000,
		Datetime:  t.UTC().Format(DatetimeLayout),
		Message:   message,
	}
	if source != "" {
		if host, port, err := net.SplitHostPort(source); err == nil {
			e.SourceIP = host
			e.SourcePort, _ = strconv.Atoi(port)
		} else {
			e.SourceIP = source
		}
	}
	return e
}

// Options configure a Writer.
type Options struct {
	// Dir and File name the journal (File defaults to messages.journal).
	Dir, File string
	// MaxSize is the size in bytes past which the file is rotated
	// (default 100 MiB); MaxBackups how many rotated files are kept
	// (0 keeps none).
	MaxSize    int64
	MaxBackups int
}

// Writer appends entries to the journal. It is safe for concurrent use.
type Writer struct {
	path       string
	maxSize    int64
	maxBackups int

	mu      sync.Mutex
	f       *os.File
	size    int64
	buf     bytes.Buffer
	pending []byte // entries not written yet (WriteLater)
}

// Open opens (creating it) the journal for appending.
func Open(o Options) (*Writer, error) {
	if o.Dir == "" {
		return nil, errors.New("journal: no directory given")
	}
	if o.File == "" {
		o.File = "messages.journal"
	}
	if o.MaxSize <= 0 {
		o.MaxSize = 100 << 20
	}
	if o.MaxBackups < 0 {
		o.MaxBackups = 0
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	w := &Writer{path: filepath.Join(o.Dir, o.File), maxSize: o.MaxSize, maxBackups: o.MaxBackups}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Writer) open() error {
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("journal: open %s: %w", w.path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("journal: %w", err)
	}
	if fi.Mode().Perm() != 0o600 {
		if err := f.Chmod(0o600); err != nil {
			f.Close()
			return fmt.Errorf("journal: %w", err)
		}
	}
	w.f, w.size = f, fi.Size()
	return nil
}

// Path is the current journal file.
func (w *Writer) Path() string { return w.path }

// Write appends one entry (after any entries WriteLater holds), rotating
// first when it would pass MaxSize.
func (w *Writer) Write(e Entry) error { return w.write(e, false) }

// laterMax is how much WriteLater holds before writing.
const laterMax = 64 << 10

// WriteLater appends one entry to a buffer that the next Write or Flush,
// or the buffer reaching 64 KiB, writes out: one write for many entries.
// The caller flushes it regularly (the monitor every second); entries
// still in it when the process is killed are lost.
func (w *Writer) WriteLater(e Entry) error { return w.write(e, true) }

// Flush writes what WriteLater holds.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	return w.flushLocked()
}

func (w *Writer) write(e Entry, later bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return errors.New("journal: closed")
	}
	w.buf.Reset()
	if line, err := appendEntry(w.buf.AvailableBuffer(), &e); err == nil {
		w.buf.Write(line)
	} else if err := w.encodeSlow(e); err != nil {
		return err
	}
	line := w.buf.Bytes()
	if size := w.size + int64(len(w.pending)); size > 0 && size+int64(len(line)) > w.maxSize {
		if err := w.flushLocked(); err != nil {
			return err
		}
		if err := w.rotate(); err != nil {
			return err
		}
	}
	w.pending = append(w.pending, line...)
	if later && len(w.pending) < laterMax {
		return nil
	}
	return w.flushLocked()
}

// flushLocked writes the pending entries (w.mu held).
func (w *Writer) flushLocked() error {
	if len(w.pending) == 0 {
		return nil
	}
	n, err := w.f.Write(w.pending)
	w.size += int64(n)
	w.pending = w.pending[:0]
	if cap(w.pending) > 4*laterMax {
		w.pending = nil
	}
	if err != nil {
		return fmt.Errorf("journal: write: %w", err)
	}
	return nil
}

// encodeSlow encodes an entry with encoding/json into w.buf (w.mu held).
func (w *Writer) encodeSlow(e Entry) error {
	w.buf.Reset()
	enc := json.NewEncoder(&w.buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		// JSON has no NaN or infinity (and no channels or functions):
		// keep the entry, with the message as text.
		w.buf.Reset()
		e.Message = map[string]any{"unencodable": fmt.Sprintf("%v", e.Message), "error": err.Error()}
		if err := enc.Encode(e); err != nil {
			return fmt.Errorf("journal: encode: %w", err)
		}
	}
	return nil
}

// Record writes a message at t from source; it makes Writer a
// monitor.Journal.
func (w *Writer) Record(t time.Time, source string, message any) error {
	return w.Write(NewEntry(t, source, message))
}

// rotate shifts FILE.N-1 to FILE.N ... FILE to FILE.1 (w.mu held).
func (w *Writer) rotate() error {
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("journal: close for rotation: %w", err)
	}
	w.f = nil
	if w.maxBackups == 0 {
		if err := os.Remove(w.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("journal: rotate: %w", err)
		}
		return w.open()
	}
	_ = os.Remove(w.backup(w.maxBackups))
	for i := w.maxBackups - 1; i >= 1; i-- {
		if err := os.Rename(w.backup(i), w.backup(i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("journal: rotate: %w", err)
		}
	}
	if err := os.Rename(w.path, w.backup(1)); err != nil {
		return fmt.Errorf("journal: rotate: %w", err)
	}
	return w.open()
}

func (w *Writer) backup(i int) string { return w.path + "." + strconv.Itoa(i) }

// Close writes what WriteLater holds and closes the journal.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	ferr := w.flushLocked()
	err := w.f.Close()
	if err == nil {
		err = ferr
	}
	w.f = nil
	return err
}

// tailWindow is how far back from the end Tail reads.
const tailWindow = 1 << 20

// Tail returns up to n of the newest entries of the current file (looking
// at most at its last MiB), oldest first. Lines that do not parse are
// skipped.
func (w *Writer) Tail(n int) ([]Entry, error) {
	w.mu.Lock()
	if w.f != nil {
		_ = w.flushLocked()
	}
	path := w.path
	w.mu.Unlock()
	return TailFile(path, n)
}

// TailFile is Tail for a journal file by path.
func TailFile(path string, n int) ([]Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := fi.Size() - tailWindow
	if off < 0 {
		off = 0
	}
	data, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return nil, err
	}
	lines := bytes.Split(data, []byte{'\n'})
	if off > 0 && len(lines) > 0 {
		lines = lines[1:] // a partial first line
	}
	var out []Entry
	for i := len(lines) - 1; i >= 0 && len(out) < n; i-- {
		if len(bytes.TrimSpace(lines[i])) == 0 {
			continue
		}
		var e Entry
		if json.Unmarshal(lines[i], &e) == nil {
			out = append(out, e)
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

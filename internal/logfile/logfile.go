// Package logfile keeps log files small: a Writer that rotates its file when
// it passes a size cap, and Rotate / CopyTruncate for files that another
// process writes (vmhost.log), keeping a few numbered old files
// (name.1 newest ... name.N oldest).
package logfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"syscall"
)

// Defaults for mb's logs.
const (
	DefaultMaxSize = 8 << 20
	DefaultKeep    = 3
)

// Writer is an io.Writer appending to a file that it rotates once the file
// passes MaxSize. It is safe for concurrent use.
type Writer struct {
	path    string
	maxSize int64
	keep    int

	mu   sync.Mutex
	f    *os.File
	size int64
}

// Open opens (creating, mode 0600) path for appending. maxSize <= 0 and
// keep <= 0 use the defaults.
func Open(path string, maxSize int64, keep int) (*Writer, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if keep <= 0 {
		keep = DefaultKeep
	}
	w := &Writer{path: path, maxSize: maxSize, keep: keep}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Writer) open() error {
	f, err := OpenAppend(w.path)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat log %s: %w", w.path, err)
	}
	w.f, w.size = f, st.Size()
	return nil
}

// ErrNotRegular means a log path is a symbolic link, a FIFO or anything
// else than a regular file: mb never writes through a link in its state
// directory, where someone may have planted one aiming at a file of the
// user's.
var ErrNotRegular = errors.New("not a regular file")

// OpenAppend opens path (creating it with mode 0600) for appending, without
// following a symbolic link (O_NOFOLLOW) and without blocking on a FIFO: a
// path that is not a regular file is refused with ErrNotRegular.
func OpenAppend(path string) (*os.File, error) {
	return openNoFollow(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE)
}

// openNoFollow opens path with flag plus O_NOFOLLOW and O_NONBLOCK and
// checks it is a regular file.
func openNoFollow(path string, flag int) (*os.File, error) {
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o600)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("open log %s: %w: it is a symbolic link; mb does not write through links in its state directory: remove it (rm %s)", path, ErrNotRegular, path)
	}
	if err != nil {
		return nil, fmt.Errorf("open log %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat log %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("open log %s: %w (it is %s): remove it (rm %s)", path, ErrNotRegular, st.Mode().Type(), path)
	}
	return f, nil
}

// Write appends p, rotating first when the file is full.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return 0, errors.New("log file is closed")
	}
	if w.size > 0 && w.size+int64(len(p)) > w.maxSize {
		w.f.Close()
		w.f = nil
		if err := Rotate(w.path, w.keep); err != nil {
			// Keep logging into the old file rather than losing lines.
			_ = w.open()
			return 0, err
		}
		if err := w.open(); err != nil {
			return 0, err
		}
	}
	n, err := w.f.Write(p)
	w.size += int64(n)
	return n, err
}

// Close closes the file.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// Rotate renames path to path.1, shifting older files up to path.keep and
// dropping the oldest. A missing path is not an error.
func Rotate(path string, keep int) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := shift(path, keep); err != nil {
		return err
	}
	if err := os.Rename(path, path+".1"); err != nil {
		return fmt.Errorf("rotate %s: %w", path, err)
	}
	return nil
}

// CopyTruncate rotates a file that another process keeps open in append
// mode: it copies the file to path.1 (shifting the older ones) and truncates
// it, so the writer's next append lands at the start of the emptied file.
// Lines written between the copy and the truncation are lost, which is the
// price of not owning the writer.
func CopyTruncate(path string, keep int) error {
	// Read and truncate through one descriptor opened without following a
	// link: a planted link must neither leak its target into path.1 nor
	// get the target truncated.
	src, err := openNoFollow(path, os.O_RDWR)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("rotate %s: %w", path, err)
	}
	defer src.Close()
	if err := shift(path, keep); err != nil {
		return err
	}
	// shift removed or renamed path.1 away: create it afresh (O_EXCL never
	// follows a link).
	_ = os.Remove(path + ".1")
	dst, err := os.OpenFile(path+".1", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("rotate %s: %w", path, err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return fmt.Errorf("rotate %s: copy: %w", path, err)
	}
	if err := dst.Close(); err != nil {
		return fmt.Errorf("rotate %s: %w", path, err)
	}
	if err := src.Truncate(0); err != nil {
		return fmt.Errorf("rotate %s: truncate: %w", path, err)
	}
	return nil
}

// RotateIfLarger runs CopyTruncate when path is larger than maxSize.
func RotateIfLarger(path string, maxSize int64, keep int) error {
	st, err := os.Stat(path)
	if err != nil || st.Size() <= maxSize {
		return nil
	}
	return CopyTruncate(path, keep)
}

// shift moves path.(i) to path.(i+1) for i = keep-1 .. 1 and removes
// path.keep, making room for a new path.1.
func shift(path string, keep int) error {
	if keep < 1 {
		keep = 1
	}
	_ = os.Remove(path + "." + strconv.Itoa(keep))
	for i := keep - 1; i >= 1; i-- {
		from := path + "." + strconv.Itoa(i)
		if err := os.Rename(from, path+"."+strconv.Itoa(i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotate %s: %w", from, err)
		}
	}
	return nil
}

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"sync"

	"github.com/mbvm/mb/agent/qgaproto"
)

// Limits of the guest-file commands.
const (
	maxOpenFiles     = 64
	defaultReadCount = 4096
	// maxReadCount keeps a guest-file-read reply well under the host's
	// reply limit.
	maxReadCount = 16 << 20
)

type fileTable struct {
	mu   sync.Mutex
	next int64
	open map[int64]*openFile
}

type openFile struct {
	mu sync.Mutex
	f  *os.File
}

// fopenFlags maps an fopen(3) mode to open(2) flags.
func fopenFlags(mode string) (int, bool) {
	switch mode {
	case "", "r", "rb":
		return os.O_RDONLY, true
	case "r+", "rb+", "r+b":
		return os.O_RDWR, true
	case "w", "wb":
		return os.O_WRONLY | os.O_CREATE | os.O_TRUNC, true
	case "w+", "wb+", "w+b":
		return os.O_RDWR | os.O_CREATE | os.O_TRUNC, true
	case "a", "ab":
		return os.O_WRONLY | os.O_CREATE | os.O_APPEND, true
	case "a+", "ab+", "a+b":
		return os.O_RDWR | os.O_CREATE | os.O_APPEND, true
	}
	return 0, false
}

func (s *server) cmdFileOpen(_ context.Context, args json.RawMessage) (any, error) {
	var a qgaproto.FileOpenArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	if a.Path == "" {
		return nil, genericError("Parameter 'path' is missing")
	}
	flags, ok := fopenFlags(a.Mode)
	if !ok {
		return nil, genericError("Parameter 'mode' has invalid value %q", a.Mode)
	}
	s.files.mu.Lock()
	n := len(s.files.open)
	s.files.mu.Unlock()
	if n >= maxOpenFiles {
		return nil, genericError("too many open files (%d): close some with guest-file-close", n)
	}
	f, err := os.OpenFile(a.Path, flags, 0o644)
	if err != nil {
		return nil, genericError("failed to open file %q: %v", a.Path, err)
	}
	s.files.mu.Lock()
	defer s.files.mu.Unlock()
	s.files.next++
	h := s.files.next + 1000
	s.files.open[h] = &openFile{f: f}
	return h, nil
}

func (s *server) lookupFile(h int64) (*openFile, error) {
	s.files.mu.Lock()
	defer s.files.mu.Unlock()
	f, ok := s.files.open[h]
	if !ok {
		return nil, genericError("Invalid parameter 'handle': no open file %d", h)
	}
	return f, nil
}

func (s *server) cmdFileRead(_ context.Context, args json.RawMessage) (any, error) {
	var a qgaproto.FileReadArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	if a.Count == 0 {
		a.Count = defaultReadCount
	}
	if a.Count < 0 || a.Count > maxReadCount {
		return nil, genericError("Parameter 'count' must be between 1 and %d", maxReadCount)
	}
	of, err := s.lookupFile(a.Handle)
	if err != nil {
		return nil, err
	}
	of.mu.Lock()
	defer of.mu.Unlock()
	buf := make([]byte, a.Count)
	n, err := io.ReadFull(of.f, buf)
	eof := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
	if err != nil && !eof {
		return nil, genericError("failed to read file: %v", err)
	}
	return qgaproto.FileRead{Count: n, BufB64: buf[:n], EOF: eof}, nil
}

func (s *server) cmdFileWrite(_ context.Context, args json.RawMessage) (any, error) {
	var a qgaproto.FileWriteArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	buf := a.BufB64
	if a.Count != nil {
		if *a.Count < 0 || *a.Count > len(buf) {
			return nil, genericError("Parameter 'count' is out of range (0..%d)", len(buf))
		}
		buf = buf[:*a.Count]
	}
	of, err := s.lookupFile(a.Handle)
	if err != nil {
		return nil, err
	}
	of.mu.Lock()
	defer of.mu.Unlock()
	n, err := of.f.Write(buf)
	if err != nil {
		return nil, genericError("failed to write file: %v", err)
	}
	return qgaproto.FileWrite{Count: n}, nil
}

func (s *server) cmdFileClose(_ context.Context, args json.RawMessage) (any, error) {
	var a qgaproto.FileHandleArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	s.files.mu.Lock()
	of, ok := s.files.open[a.Handle]
	delete(s.files.open, a.Handle)
	s.files.mu.Unlock()
	if !ok {
		return nil, genericError("Invalid parameter 'handle': no open file %d", a.Handle)
	}
	of.mu.Lock()
	defer of.mu.Unlock()
	if err := of.f.Close(); err != nil {
		return nil, genericError("failed to close file: %v", err)
	}
	return nil, nil
}

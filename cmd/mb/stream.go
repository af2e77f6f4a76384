package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/mbvm/mb/daemon/api"
)

// errNoStream: the VM's guest agent cannot stream (stock qemu-ga); the
// caller falls back to the one-shot exec.
var errNoStream = errors.New("the guest agent cannot stream")

// streamIO is what a streamed exec reads and writes on the client.
type streamIO struct {
	// stdin, when set, is sent to the command until EOF; otherwise the
	// command's stdin is closed at once.
	stdin io.Reader
	// stdinChunk is the most stdin read for one frame: small for a
	// terminal (each keystroke goes at once), large for a pipe.
	stdinChunk     int
	stdout, stderr io.Writer
	// resize, when set, delivers new terminal sizes.
	resize <-chan [2]uint16
}

// runStream runs a command through the daemon's exec stream and returns
// its exit code. Ending ctx hangs up, which kills the command in the
// guest. errNoStream when the guest agent cannot stream.
func (a *app) runStream(ctx context.Context, name string, req api.ExecStreamRequest, sio streamIO) (int, error) {
	c, err := a.daemonClient(ctx)
	if err != nil {
		return 0, err
	}
	s, err := c.ExecStream(ctx, name, req)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()

	first, err := s.Recv()
	if err != nil {
		return 0, streamErr(ctx, name, err)
	}
	if first.Error != "" {
		if first.Code == "not_available" {
			return 0, fmt.Errorf("%w: %s", errNoStream, first.Error)
		}
		return 0, fmt.Errorf("VM %s: %s", name, first.Error)
	}
	if first.Exit != nil {
		if first.ExecError != "" {
			fmt.Fprintf(a.stderr, "mb: VM %s: %s\n", name, first.ExecError)
		}
		return *first.Exit, nil
	}
	go pumpStdin(s, sio)
	if sio.resize != nil {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case sz := <-sio.resize:
					if s.Send(api.StreamFrame{Rows: sz[0], Cols: sz[1]}) != nil {
						return
					}
				}
			}
		}()
	}
	for {
		f, err := s.Recv()
		if err != nil {
			return 0, streamErr(ctx, name, err)
		}
		if len(f.Stdout) > 0 {
			if _, err := sio.stdout.Write(f.Stdout); err != nil {
				return 0, fmt.Errorf("write the command's output: %w", err)
			}
		}
		if len(f.Stderr) > 0 {
			_, _ = sio.stderr.Write(f.Stderr)
		}
		switch {
		case f.Error != "":
			return 0, fmt.Errorf("VM %s: %s", name, f.Error)
		case f.Exit != nil:
			if f.ExecError != "" {
				fmt.Fprintf(a.stderr, "mb: VM %s: %s\n", name, f.ExecError)
			}
			return *f.Exit, nil
		}
	}
}

func streamErr(ctx context.Context, name string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("VM %s: the exec stream ended without the command's exit status (did the VM or the daemon stop?)", name)
	}
	return fmt.Errorf("VM %s: %w", name, err)
}

// pumpStdin sends sio.stdin in frames, then EOF.
func pumpStdin(s *api.ExecStream, sio streamIO) {
	if sio.stdin == nil {
		_ = s.Send(api.StreamFrame{EOF: true})
		return
	}
	chunk := min(max(sio.stdinChunk, 1), api.MaxStreamStdin)
	buf := make([]byte, chunk)
	for {
		n, err := sio.stdin.Read(buf)
		if n > 0 {
			if s.Send(api.StreamFrame{Stdin: append([]byte(nil), buf[:n]...)}) != nil {
				return
			}
		}
		if err != nil {
			_ = s.Send(api.StreamFrame{EOF: true})
			return
		}
	}
}

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mbvm/mb/agent/qgaproto"
)

// streamBufMax is how much output of one stream the agent holds for the
// host; a command writing more waits until the host read some.
const streamBufMax = 1 << 20

// outStream is the buffered output of a streamed command (mb-stream):
// readers append, mb-exec-read takes.
type outStream struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	out     []byte
	err     []byte
	// dropped: the host gave up on the command; output is read and
	// thrown away so the command never blocks on it.
	dropped bool
}

func newOutStream() *outStream { return &outStream{changed: make(chan struct{})} }

func (o *outStream) signalLocked() {
	close(o.changed)
	o.changed = make(chan struct{})
}

// push appends b to the stream's stdout (or stderr), waiting while the
// buffer is full.
func (o *outStream) push(stderr bool, b []byte) {
	for {
		o.mu.Lock()
		dst := &o.out
		if stderr {
			dst = &o.err
		}
		if o.dropped {
			o.mu.Unlock()
			return
		}
		if len(*dst) < streamBufMax {
			*dst = append(*dst, b...)
			o.signalLocked()
			o.mu.Unlock()
			return
		}
		ch := o.changed
		o.mu.Unlock()
		<-ch
	}
}

// drop makes the stream throw its output away from now on.
func (o *outStream) drop() {
	o.mu.Lock()
	o.dropped = true
	o.out, o.err = nil, nil
	o.signalLocked()
	o.mu.Unlock()
}

// take returns up to max bytes of each stream.
func (o *outStream) take(max int) (out, errb []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := min(len(o.out), max)
	m := min(len(o.err), max)
	if n == 0 && m == 0 {
		return nil, nil
	}
	out = append([]byte(nil), o.out[:n]...)
	errb = append([]byte(nil), o.err[:m]...)
	o.out = o.out[n:]
	o.err = o.err[m:]
	o.signalLocked()
	return out, errb
}

func (o *outStream) pending() (bool, <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.out) > 0 || len(o.err) > 0, o.changed
}

// readInto reads f into the stream until EOF or an error (EIO on a
// pseudo-terminal whose other side is closed).
func (o *outStream) readInto(f *os.File, stderr bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			o.push(stderr, buf[:n])
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// After the drain window: take what is in the pipe
				// without waiting for children still holding it.
				var c capture
				c.drainNow(f, buf)
				if len(c.buf) > 0 {
					o.push(stderr, c.buf)
				}
			}
			return
		}
	}
}

// startStream starts a command for mb-stream: output to an outStream,
// stdin streamed, optionally on a new pseudo-terminal.
func startStream(a qgaproto.ExecArgs, onExit func(pid int)) (*execProc, int, error) {
	cmd, err := newGuestCmd(a)
	if err != nil {
		return nil, 0, err
	}

	var closeAfterStart, readers []*os.File
	closeAll := func() {
		for _, f := range append(closeAfterStart, readers...) {
			f.Close()
		}
	}
	var stdin *os.File
	var pty *os.File
	if a.Pty != nil {
		m, s, err := openPty(*a.Pty)
		if err != nil {
			return nil, 0, fmt.Errorf("allocate a pseudo-terminal: %w", err)
		}
		pty = m
		closeAfterStart = append(closeAfterStart, s)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = s, s, s
		// The command leads a new session with the terminal as its
		// controlling terminal, so ^C from the host reaches its
		// foreground job as SIGINT.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		// stdin is a second descriptor of the master: closing it at
		// the host's EOF leaves the output side open.
		if stdin, err = dupFile(m, "pty-stdin"); err != nil {
			m.Close()
			s.Close()
			return nil, 0, err
		}
		readers = append(readers, m)
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		r, w, err := os.Pipe()
		if err != nil {
			return nil, 0, fmt.Errorf("stdin pipe: %w", err)
		}
		cmd.Stdin, stdin = r, w
		closeAfterStart = append(closeAfterStart, r)
		or, ow, err := os.Pipe()
		if err != nil {
			closeAll()
			stdin.Close()
			return nil, 0, fmt.Errorf("output pipe: %w", err)
		}
		er, ew, err := os.Pipe()
		if err != nil {
			or.Close()
			ow.Close()
			closeAll()
			stdin.Close()
			return nil, 0, fmt.Errorf("output pipe: %w", err)
		}
		cmd.Stdout, cmd.Stderr = ow, ew
		closeAfterStart = append(closeAfterStart, ow, ew)
		readers = append(readers, or, er)
	}
	if err := cmd.Start(); err != nil {
		closeAll()
		stdin.Close()
		return nil, 0, fmt.Errorf("failed to execute child process %q: %w", a.Path, err)
	}
	for _, f := range closeAfterStart {
		f.Close()
	}
	pid := cmd.Process.Pid
	p := &execProc{done: make(chan struct{}), stream: newOutStream(), pty: pty, stdin: stdin, inq: newInQueue()}
	go p.inq.feed(stdin, p.done)
	var wg sync.WaitGroup
	for i, f := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.stream.readInto(f, i == 1)
		}()
	}
	go func() {
		cmd.Wait()
		drained := make(chan struct{})
		go func() { wg.Wait(); close(drained) }()
		select {
		case <-drained:
		case <-time.After(drainWindow):
			for _, f := range readers {
				f.SetReadDeadline(time.Now())
			}
			<-drained
		}
		for _, f := range readers {
			f.Close()
		}
		st := qgaproto.ExecStatus{Exited: true}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			sig := int(ws.Signal())
			st.Signal = &sig
		} else {
			code := cmd.ProcessState.ExitCode()
			st.ExitCode = &code
		}
		p.status = st
		p.stdinMu.Lock()
		if p.stdin != nil {
			p.stdin.Close()
			p.stdin = nil
		}
		p.stdinMu.Unlock()
		close(p.done)
		onExit(pid)
	}()
	return p, pid, nil
}

// dupFile returns a second, non-blocking *os.File for f's descriptor.
func dupFile(f *os.File, name string) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, fmt.Errorf("dup %s: %w", name, derr)
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return nil, fmt.Errorf("dup %s: %w", name, err)
	}
	return os.NewFile(uintptr(nfd), name), nil
}

// cmdExecRead answers mb-exec-read.
func (s *server) cmdExecRead(ctx context.Context, args json.RawMessage) (any, error) {
	var a qgaproto.ExecReadArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	if a.WaitMs < 0 || a.WaitMs > qgaproto.MaxExecReadWait {
		return nil, genericError("Parameter 'wait-ms' must be between 0 and %d", qgaproto.MaxExecReadWait)
	}
	s.execs.mu.Lock()
	p, ok := s.execs.procs[a.PID]
	s.execs.mu.Unlock()
	if !ok || p.stream == nil {
		return nil, genericError("Invalid parameter 'pid': no streamed command with PID %d (or it already reported its exit)", a.PID)
	}
	timer := time.NewTimer(time.Duration(a.WaitMs) * time.Millisecond)
	defer timer.Stop()
	for {
		has, changed := p.stream.pending()
		exited := false
		select {
		case <-p.done:
			exited = true
		default:
		}
		if has || exited {
			var r qgaproto.ExecRead
			r.OutData, r.ErrData = p.stream.take(qgaproto.MaxExecRead)
			if more, _ := p.stream.pending(); exited && !more {
				r.Exited, r.ExitCode, r.Signal = true, p.status.ExitCode, p.status.Signal
				s.execs.mu.Lock()
				delete(s.execs.procs, a.PID)
				s.execs.mu.Unlock()
			}
			return r, nil
		}
		select {
		case <-changed:
		case <-p.done:
		case <-timer.C:
			return qgaproto.ExecRead{}, nil
		case <-ctx.Done():
			return nil, genericError("agent shutting down")
		}
	}
}

// cmdExecResize answers mb-exec-resize.
func (s *server) cmdExecResize(_ context.Context, args json.RawMessage) (any, error) {
	var a qgaproto.ExecResizeArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	s.execs.mu.Lock()
	p, ok := s.execs.procs[a.PID]
	s.execs.mu.Unlock()
	if !ok || p.pty == nil {
		return nil, genericError("Invalid parameter 'pid': no command on a pseudo-terminal with PID %d", a.PID)
	}
	if err := setWinSize(p.pty, a.WinSize); err != nil {
		return nil, genericError("resize the terminal of command %d: %v", a.PID, err)
	}
	return nil, nil
}

// inQueueMax bounds the stdin a streamed command's queue holds; the host
// sends again what did not fit.
const inQueueMax = 1 << 20

// inQueue is a streamed command's pending stdin: mb-exec-input appends
// without waiting, a feeder goroutine writes it to the command.
type inQueue struct {
	mu   sync.Mutex
	buf  []byte
	eof  bool
	err  error // the command's stdin failed (it closed it, or exited)
	wake chan struct{}
}

func newInQueue() *inQueue { return &inQueue{wake: make(chan struct{}, 1)} }

// feed writes the queue to f until EOF, an error, or done.
func (q *inQueue) feed(f *os.File, done <-chan struct{}) {
	for {
		q.mu.Lock()
		data, eof := q.buf, q.eof
		q.buf = nil
		q.mu.Unlock()
		if len(data) > 0 {
			if _, err := f.Write(data); err != nil {
				q.mu.Lock()
				q.err = err
				q.mu.Unlock()
				f.Close()
				return
			}
			continue
		}
		if eof {
			f.Close()
			return
		}
		select {
		case <-q.wake:
		case <-done:
			return
		}
	}
}

// streamInput queues what fits of a chunk of a streamed command's stdin;
// the caller holds p.stdinMu.
func streamInput(p *execProc, a qgaproto.ExecInputArgs) (any, error) {
	q := p.inq
	q.mu.Lock()
	if q.err != nil {
		err := q.err
		q.mu.Unlock()
		p.stdin = nil
		return nil, genericError("write stdin of command %d: %v", a.PID, err)
	}
	n := min(len(a.Data), max(inQueueMax-len(q.buf), 0))
	q.buf = append(q.buf, a.Data[:n]...)
	if a.EOF && n == len(a.Data) {
		q.eof = true
		// The feeder closes stdin once the queue is written.
		p.stdin = nil
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return qgaproto.ExecInputResult{Written: n}, nil
}

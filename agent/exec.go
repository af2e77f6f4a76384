package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mbvm/mb/agent/qgaproto"
)

// Limits of guest-exec.
const (
	// MaxExecOutput is the most output kept per stream; the rest is read and
	// dropped, and out-truncated/err-truncated is set.
	MaxExecOutput = 16 << 20
	// maxExecs bounds the commands whose status has not been collected.
	maxExecs = 64
	// drainWindow is how long output is still read after the command
	// exited, for children it left behind holding its pipes. They are not
	// waited for: a command that starts a daemon still returns.
	drainWindow = 200 * time.Millisecond
)

// defaultPath is the PATH a command gets when neither its env nor the agent
// has one (the agent as PID 1 starts with an empty environment).
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

type execTable struct {
	mu    sync.Mutex
	procs map[int]*execProc
}

type execProc struct {
	done   chan struct{}
	status qgaproto.ExecStatus
	// stdin is the command's stdin while it streams (mb-stdin-stream);
	// stdinMu keeps chunks in order.
	stdinMu sync.Mutex
	stdin   *os.File
	// discard: the host gave up on the command (mb-exec-kill); its entry
	// goes once it exited.
	discard bool
	// stream holds the output of a command started with mb-stream, and
	// pty the master of its pseudo-terminal when it has one.
	stream *outStream
	pty    *os.File
	// inq is a streamed command's pending stdin.
	inq *inQueue
}

// stdinWriteTimeout bounds the write of one stdin chunk: a command that
// does not read its stdin for this long makes mb-exec-input fail rather
// than hold the agent.
const stdinWriteTimeout = 10 * time.Second

func (s *server) cmdExec(_ context.Context, args json.RawMessage) (any, error) {
	var a qgaproto.ExecArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	if a.Path == "" {
		return nil, genericError("Parameter 'path' is missing")
	}
	if a.TimeoutMs < 0 {
		return nil, genericError("Parameter 'mb-timeout-ms' must not be negative")
	}
	// The table stays locked until the command is in it, so that its
	// exit (which may drop it) comes after.
	s.execs.mu.Lock()
	defer s.execs.mu.Unlock()
	if n := len(s.execs.procs); n >= maxExecs {
		return nil, genericError("%d commands have not been collected with guest-exec-status; collect them first", n)
	}
	start := startExec
	if a.Stream {
		start = startStream
	} else if a.Pty != nil {
		return nil, genericError("Parameter 'mb-pty' needs 'mb-stream': true")
	}
	p, pid, err := start(a, func(pid int) { s.execs.exited(pid) })
	if err != nil {
		return nil, execStartError(err)
	}
	s.execs.procs[pid] = p
	s.log.Debug("exec started", "pid", pid, "path", a.Path)
	return qgaproto.ExecPID{PID: pid}, nil
}

// exited drops a command's entry when the host gave up on it.
func (t *execTable) exited(pid int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.procs[pid]; ok && p.discard {
		delete(t.procs, pid)
	}
}

// execStartError is the reply to a guest-exec that could not start its
// command, with the reason the host acts on.
func execStartError(err error) *qgaproto.Error {
	reason := qgaproto.ReasonNotExecutable
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotInPath) {
		reason = qgaproto.ReasonNotFound
	}
	return &qgaproto.Error{Class: qgaproto.ClassGenericError, Desc: err.Error(), Reason: reason}
}

// cmdExecKill answers mb-exec-kill: SIGKILL to the command's process
// group; its entry goes once it exited.
func (s *server) cmdExecKill(_ context.Context, args json.RawMessage) (any, error) {
	var a qgaproto.ExecKillArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	s.execs.mu.Lock()
	defer s.execs.mu.Unlock()
	p, ok := s.execs.procs[a.PID]
	if !ok {
		return nil, genericError("Invalid parameter 'pid': no command with PID %d (or its status was already collected)", a.PID)
	}
	select {
	case <-p.done:
		delete(s.execs.procs, a.PID)
		return nil, nil
	default:
	}
	p.discard = true
	if p.stream != nil {
		p.stream.drop()
	}
	if err := unix.Kill(-a.PID, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		return nil, genericError("kill process group %d: %v", a.PID, err)
	}
	s.log.Debug("exec killed on the host's request", "pid", a.PID)
	return nil, nil
}

// cmdExecInput answers mb-exec-input: the next chunk of a streamed stdin.
func (s *server) cmdExecInput(_ context.Context, args json.RawMessage) (any, error) {
	var a qgaproto.ExecInputArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	return s.execInput(a)
}

// execInput hands one decoded chunk of stdin to its command.
func (s *server) execInput(a qgaproto.ExecInputArgs) (any, error) {
	s.execs.mu.Lock()
	p, ok := s.execs.procs[a.PID]
	s.execs.mu.Unlock()
	if !ok {
		return nil, genericError("Invalid parameter 'pid': no command with PID %d (or its status was already collected)", a.PID)
	}
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	if p.stdin == nil {
		return nil, genericError("command %d takes no more stdin (started without mb-stdin-stream, or stdin already closed)", a.PID)
	}
	if p.stream != nil {
		return streamInput(p, a)
	}
	if len(a.Data) > 0 {
		if err := writeStdin(p.stdin, a.Data); err != nil {
			p.stdin.Close()
			p.stdin = nil
			return nil, genericError("write stdin of command %d: %v", a.PID, err)
		}
	}
	if a.EOF {
		p.stdin.Close()
		p.stdin = nil
	}
	return nil, nil
}

func writeStdin(f *os.File, data []byte) error {
	f.SetWriteDeadline(time.Now().Add(stdinWriteTimeout))
	_, err := f.Write(data)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("the command read none of its stdin for %v", stdinWriteTimeout)
	}
	return err
}

func (s *server) cmdExecStatus(_ context.Context, args json.RawMessage) (any, error) {
	var a struct {
		PID *int `json:"pid"`
	}
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	if a.PID == nil {
		return nil, genericError("Parameter 'pid' is missing")
	}
	s.execs.mu.Lock()
	defer s.execs.mu.Unlock()
	p, ok := s.execs.procs[*a.PID]
	if !ok {
		return nil, genericError("Invalid parameter 'pid': no command with PID %d (or its status was already collected)", *a.PID)
	}
	select {
	case <-p.done:
		delete(s.execs.procs, *a.PID)
		return p.status, nil
	default:
		return qgaproto.ExecStatus{Exited: false}, nil
	}
}

// newGuestCmd is the command of a guest-exec request: its environment
// (the agent's when the request has none, with a PATH added when it
// lacks one), the program looked up on that PATH, run in /.
func newGuestCmd(a qgaproto.ExecArgs) (*exec.Cmd, error) {
	env := a.Env
	if env == nil {
		env = os.Environ()
	}
	if envValue(env, "PATH") == "" {
		env = append(env[:len(env):len(env)], "PATH="+pathOf(os.Environ()))
	}
	path, err := lookPath(a.Path, envValue(env, "PATH"))
	if err != nil {
		return nil, err
	}
	return &exec.Cmd{Path: path, Args: append([]string{a.Path}, a.Arg...), Env: env, Dir: "/"}, nil
}

// startExec starts the command in its own process group and collects its
// output and status in the background.
// onExit runs once the command exited and its status is recorded.
func startExec(a qgaproto.ExecArgs, onExit func(pid int)) (*execProc, int, error) {
	cmd, err := newGuestCmd(a)
	if err != nil {
		return nil, 0, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}

	var closeAfterStart []*os.File
	var stdinW *os.File
	if a.InputData != nil || a.StdinStream {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, 0, fmt.Errorf("stdin pipe: %w", err)
		}
		cmd.Stdin, stdinW = r, w
		closeAfterStart = append(closeAfterStart, r)
	}
	mode := a.CaptureOutput
	if mode == "" {
		mode = qgaproto.CaptureNone
	}
	var outR, errR *os.File
	newPipe := func() (*os.File, *os.File, error) {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, nil, fmt.Errorf("output pipe: %w", err)
		}
		closeAfterStart = append(closeAfterStart, w)
		return r, w, nil
	}
	closeAll := func() {
		for _, f := range append(closeAfterStart, stdinW, outR, errR) {
			if f != nil {
				f.Close()
			}
		}
	}
	if mode != "none" && mode != "stderr" {
		r, w, err := newPipe()
		if err != nil {
			closeAll()
			return nil, 0, err
		}
		outR, cmd.Stdout = r, w
		if mode == "merged" {
			cmd.Stderr = w
		}
	}
	if mode == "separated" || mode == "stderr" {
		r, w, err := newPipe()
		if err != nil {
			closeAll()
			return nil, 0, err
		}
		errR, cmd.Stderr = r, w
	}
	if err := cmd.Start(); err != nil {
		closeAll()
		return nil, 0, fmt.Errorf("failed to execute child process %q: %w", a.Path, err)
	}
	for _, f := range closeAfterStart {
		f.Close()
	}
	pid := cmd.Process.Pid
	p := &execProc{done: make(chan struct{})}
	switch {
	case stdinW != nil && a.StdinStream:
		p.stdin = stdinW
		if len(a.InputData) > 0 {
			// The first chunk goes before any mb-exec-input: the writer
			// holds stdinMu until it is written.
			p.stdinMu.Lock()
			go func() {
				defer p.stdinMu.Unlock()
				if err := writeStdin(stdinW, a.InputData); err != nil {
					p.stdin = nil
					stdinW.Close()
				}
			}()
		}
	case stdinW != nil:
		go func() {
			stdinW.Write(a.InputData)
			stdinW.Close()
		}()
	}
	var timer *time.Timer
	if a.TimeoutMs > 0 {
		timer = time.AfterFunc(time.Duration(a.TimeoutMs)*time.Millisecond, func() {
			unix.Kill(-pid, unix.SIGKILL)
		})
	}

	out, errc := &capture{}, &capture{}
	var wg sync.WaitGroup
	for _, c := range []struct {
		f   *os.File
		cap *capture
	}{{outR, out}, {errR, errc}} {
		if c.f == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.cap.readFrom(c.f)
		}()
	}
	go func() {
		cmd.Wait()
		if timer != nil {
			timer.Stop()
		}
		drained := make(chan struct{})
		go func() { wg.Wait(); close(drained) }()
		select {
		case <-drained:
		case <-time.After(drainWindow):
			// Children left behind hold the pipes open: stop waiting for
			// them, but keep what is already in the pipes.
			for _, f := range []*os.File{outR, errR} {
				if f != nil {
					f.SetReadDeadline(time.Now())
				}
			}
			<-drained
		}
		for _, f := range []*os.File{outR, errR} {
			if f != nil {
				f.Close()
			}
		}
		st := qgaproto.ExecStatus{Exited: true}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			sig := int(ws.Signal())
			st.Signal = &sig
		} else {
			code := cmd.ProcessState.ExitCode()
			st.ExitCode = &code
		}
		if outR != nil {
			st.OutData, st.OutTruncated = out.result()
		}
		if errR != nil {
			st.ErrData, st.ErrTruncated = errc.result()
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

func envValue(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}

func pathOf(env []string) string {
	if p := envValue(env, "PATH"); p != "" {
		return p
	}
	return defaultPath
}

// lookPath finds file in the colon-separated path list, like execvp.
func lookPath(file, path string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("failed to execute child process %q: %w %s", file, errNotInPath, path)
}

// errNotInPath: lookPath found no such program.
var errNotInPath = errors.New("not found in PATH")

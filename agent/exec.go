package agent

import (
	"context"
	"encoding/json"
	"fmt"
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
}

// captureMode is guest-exec's capture-output: a bool (qemu-ga before 8.1)
// or one of none, stdout, stderr, separated, merged.
type captureMode string

func (c *captureMode) UnmarshalJSON(b []byte) error {
	var flag bool
	if err := json.Unmarshal(b, &flag); err == nil {
		*c = "none"
		if flag {
			*c = "separated"
		}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("capture-output must be a bool or a string")
	}
	switch s {
	case "none", "stdout", "stderr", "separated", "merged":
		*c = captureMode(s)
		return nil
	}
	return fmt.Errorf("capture-output %q: use none, stdout, stderr, separated or merged", s)
}

type execArgs struct {
	Path          string      `json:"path"`
	Arg           []string    `json:"arg"`
	Env           []string    `json:"env"`
	InputData     []byte      `json:"input-data"`
	CaptureOutput captureMode `json:"capture-output"`
	TimeoutMs     int64       `json:"mb-timeout-ms"`
}

func (s *server) cmdExec(_ context.Context, args json.RawMessage) (any, error) {
	var a execArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	if a.Path == "" {
		return nil, genericError("Parameter 'path' is missing")
	}
	if a.TimeoutMs < 0 {
		return nil, genericError("Parameter 'mb-timeout-ms' must not be negative")
	}
	s.execs.mu.Lock()
	n := len(s.execs.procs)
	s.execs.mu.Unlock()
	if n >= maxExecs {
		return nil, genericError("%d commands have not been collected with guest-exec-status; collect them first", n)
	}
	p, pid, err := startExec(a)
	if err != nil {
		return nil, genericError("%v", err)
	}
	s.execs.mu.Lock()
	s.execs.procs[pid] = p
	s.execs.mu.Unlock()
	s.log.Debug("exec started", "pid", pid, "path", a.Path)
	return qgaproto.ExecPID{PID: pid}, nil
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

// startExec starts the command in its own process group and collects its
// output and status in the background.
func startExec(a execArgs) (*execProc, int, error) {
	env := a.Env
	if env == nil {
		env = os.Environ()
	}
	if envValue(env, "PATH") == "" {
		env = append(env[:len(env):len(env)], "PATH="+pathOf(os.Environ()))
	}
	path, err := lookPath(a.Path, envValue(env, "PATH"))
	if err != nil {
		return nil, 0, err
	}
	cmd := &exec.Cmd{
		Path:        path,
		Args:        append([]string{a.Path}, a.Arg...),
		Env:         env,
		Dir:         "/",
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}

	var closeAfterStart []*os.File
	var stdinW *os.File
	if a.InputData != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, 0, fmt.Errorf("stdin pipe: %w", err)
		}
		cmd.Stdin, stdinW = r, w
		closeAfterStart = append(closeAfterStart, r)
	}
	mode := a.CaptureOutput
	if mode == "" {
		mode = "none"
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
	if stdinW != nil {
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

	p := &execProc{done: make(chan struct{})}
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
		close(p.done)
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
	return "", fmt.Errorf("failed to execute child process %q: not found in PATH %s", file, path)
}

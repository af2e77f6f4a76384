package rig

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/mbvm/mb/vmhost"
)

// VMHost is a stand-alone vmhost process started by the rig (not by the
// daemon). It dies with the process that started it (Pdeathsig), so a
// crashed benchmark leaves no vmhost behind.
type VMHost struct {
	Dir  string
	Cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Socket is the vmhost's control socket.
func (v *VMHost) Socket() string { return filepath.Join(v.Dir, vmhost.SocketName) }

// Client returns a protocol client for the vmhost.
func (v *VMHost) Client() *vmhost.Client { return vmhost.NewClient(v.Socket()) }

// PID is the vmhost's process ID.
func (v *VMHost) PID() int { return v.Cmd.Process.Pid }

// Done is closed when the process has exited.
func (v *VMHost) Done() <-chan struct{} { return v.done }

// ExitCode is the process's exit code (-1 when killed by a signal); valid
// after Done.
func (v *VMHost) ExitCode() int {
	if v.Cmd.ProcessState == nil {
		return -1
	}
	return v.Cmd.ProcessState.ExitCode()
}

// StartVMHost starts `vmhost --dir dir` with extra args (for example
// "--backend", "fake") and waits until it answers status. Its output goes
// to dir/vmhost.out.
func StartVMHost(ctx context.Context, bin, dir, mbHome string, env []string, args ...string) (*VMHost, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("make VM directory %s: %w", dir, err)
	}
	out, err := os.OpenFile(filepath.Join(dir, "vmhost.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open vmhost output file: %w", err)
	}
	defer out.Close()
	cmd := exec.Command(bin, append([]string{"--dir", dir, "--home", mbHome}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = ChildSysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	v := &VMHost{Dir: dir, Cmd: cmd, done: make(chan struct{})}
	go func() {
		v.err = cmd.Wait()
		close(v.done)
	}()
	c := v.Client()
	err = Poll(ctx, 10*time.Millisecond, "vmhost in "+dir+" to answer status", func() (bool, error) {
		select {
		case <-v.done:
			return false, fmt.Errorf("vmhost exited with code %d (see %s/vmhost.out)", v.ExitCode(), dir)
		default:
		}
		return c.IsAlive(), nil
	})
	if err != nil {
		v.Kill()
		return nil, err
	}
	return v, nil
}

// Kill sends SIGKILL and waits for the process to be reaped.
func (v *VMHost) Kill() {
	_ = v.Cmd.Process.Kill()
	<-v.done
}

// Stop asks the vmhost to stop its VM (mode "kill" is immediate) and waits
// for the process to exit, killing it if it outlives ctx.
func (v *VMHost) Stop(ctx context.Context, mode string) error {
	_, err := v.Client().Call(ctx, vmhost.Request{Method: vmhost.MethodStop, Mode: mode, TimeoutSeconds: 30})
	select {
	case <-v.done:
	case <-ctx.Done():
		v.Kill()
		return fmt.Errorf("vmhost in %s did not exit after stop: %w", v.Dir, ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("stop vmhost in %s: %w", v.Dir, err)
	}
	return nil
}

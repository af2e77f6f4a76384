package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/internal/layout"
)

// detachKey is Ctrl-], which detaches from the console.
const detachKey = 0x1d

func (a *app) consoleCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "console NAME",
		Short: "Attach to a VM's serial console; Ctrl-] detaches",
		Long: `Attaches the terminal to the VM's serial console (the socket its vmhost
reports). Press Ctrl-] to detach; the VM keeps running. Without a terminal
it copies stdin to the console and the console to stdout until stdin ends
or the VM stops.`,
		Example: `  mb console demo
  echo 'uname -a' | mb console demo`,
		Args:              nameArgs(1, 1),
		ValidArgsFunction: a.completeVMNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.console(cmd.Context(), args[0])
		},
	}
}

func (a *app) console(ctx context.Context, name string) error {
	sock, err := a.consoleSocket(ctx, name)
	if err != nil {
		return err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("VM %s has no console to attach to (%s: %v): it is not running, or its backend has no serial console; start it with `mb start %s`, and read the console output so far with `mb logs %s`", name, sock, errors.Unwrap(err), name, name)
	}
	if err != nil {
		return fmt.Errorf("attach to the console of VM %s at %s: %w", name, sock, err)
	}
	defer conn.Close()
	in, tty := a.stdin.(*os.File)
	tty = tty && isTerminal(in)
	if tty {
		restore, err := makeRaw(int(in.Fd()))
		if err != nil {
			return err
		}
		defer restore()
		fmt.Fprintf(a.stderr, "attached to %s's console; press Ctrl-] to detach\r\n", name)
	}
	outDone := make(chan error, 1)
	go func() {
		_, err := io.Copy(a.stdout, conn)
		outDone <- err
	}()
	inDone := make(chan error, 1)
	go func() { inDone <- copyInput(conn, a.stdin, tty) }()
	select {
	case <-ctx.Done():
	case err := <-outDone:
		if err != nil && !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("console of VM %s: %w", name, err)
		}
		if tty {
			fmt.Fprintf(a.stderr, "\r\nconsole of %s closed (the VM stopped?)\r\n", name)
		}
	case err := <-inDone:
		if errors.Is(err, errDetached) {
			fmt.Fprintf(a.stderr, "\r\ndetached from %s\r\n", name)
			return nil
		}
		// stdin ended: let the guest's answer arrive, until the VM closes
		// the console or we are interrupted.
		if uc, ok := conn.(*net.UnixConn); ok {
			_ = uc.CloseWrite()
		}
		select {
		case <-outDone:
		case <-ctx.Done():
		}
	}
	return nil
}

// consoleSocket asks the daemon (which asks the VM's vmhost) where the VM's
// console socket is; mb never builds a backend's file names itself.
func (a *app) consoleSocket(ctx context.Context, name string) (string, error) {
	c, err := a.daemonClient(ctx)
	if err != nil {
		return "", err
	}
	v, err := c.Inspect(ctx, name)
	if err != nil {
		return "", err
	}
	if sock := v.Paths[layout.PathConsole]; sock != "" {
		return sock, nil
	}
	if v.State != api.StateRunning && v.State != api.StateStarting {
		return "", fmt.Errorf("VM %s has no console to attach to: it is %s; start it with `mb start %s`, and read the console output so far with `mb logs %s`", name, v.State, name, name)
	}
	if v.Reason != "" {
		return "", fmt.Errorf("VM %s has no console to attach to: %s; read the console output so far with `mb logs %s`", name, v.Reason, name)
	}
	backend := v.Backend
	if backend == "" {
		backend = "its backend"
	}
	return "", fmt.Errorf("VM %s has no console to attach to: %s has no serial console; read what the VM logged with `mb logs %s`", name, backend, name)
}

var errDetached = errors.New("detached")

// copyInput copies stdin to the console; on a terminal, Ctrl-] detaches.
func copyInput(w io.Writer, r io.Reader, tty bool) error {
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if tty {
				if i := bytes.IndexByte(chunk, detachKey); i >= 0 {
					if i > 0 {
						_, _ = w.Write(chunk[:i])
					}
					return errDetached
				}
			}
			if _, werr := w.Write(chunk); werr != nil {
				return werr
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

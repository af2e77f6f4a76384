package qemu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/mbvm/mb/agent/guestinit"
	"github.com/mbvm/mb/vm/disk"
	"github.com/mbvm/mb/vm/spec"
)

// Host folder shares on QEMU: one virtiofsd per share, serving the host
// directory on a vhost-user socket in the VM directory; QEMU attaches it as
// a vhost-user-fs device with the share's tag, which needs the guest's
// memory shared with virtiofsd (a memfd backend). The mini image's init
// mounts the shares that mb.shares on the kernel command line lists.

// qemuShare is a share resolved for the command line.
type qemuShare struct {
	Tag, Host, Guest string
	ReadOnly         bool
}

// virtiofsdPaths are where distributions install virtiofsd: the Rust one
// (Debian's virtiofsd package) and QEMU's own (qemu-system-common up to
// QEMU 7.2).
var virtiofsdPaths = []string{"/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd"}

// findVirtiofsd returns virtiofsd's path.
func findVirtiofsd() (string, error) {
	if p, err := exec.LookPath("virtiofsd"); err == nil {
		return p, nil
	}
	for _, p := range virtiofsdPaths {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("host folder shares need virtiofsd, which was not found in PATH, /usr/libexec or /usr/lib/qemu: install it (apt-get install virtiofsd, or qemu-system-common on Debian 12)")
}

// resolveShares checks the spec's shares for QEMU.
func resolveShares(s *spec.Spec) ([]qemuShare, error) {
	var out []qemuShare
	for i, sh := range s.Shares {
		p, err := sh.HostPath()
		if err != nil {
			return nil, err
		}
		if strings.ContainsAny(sh.Guest, ",: \t\n\"") {
			return nil, fmt.Errorf("shares[%d]: guest path %q: the mini guest takes mount points without commas, colons, quotes or spaces", i, sh.Guest)
		}
		out = append(out, qemuShare{Tag: s.ShareTag(i), Host: p, Guest: filepath.Clean(sh.Guest), ReadOnly: sh.ReadOnly})
	}
	return out, nil
}

// sharesCmdline is the kernel parameter listing the shares for the guest.
func sharesCmdline(shares []qemuShare) string {
	if len(shares) == 0 {
		return ""
	}
	gs := make([]guestinit.Share, len(shares))
	for i, sh := range shares {
		gs[i] = guestinit.Share{Tag: sh.Tag, Path: sh.Guest, ReadOnly: sh.ReadOnly}
	}
	return guestinit.SharesParam + "=" + guestinit.FormatShares(gs)
}

func shareSocket(c *bootConfig, i int) string { return c.path(fmt.Sprintf("virtiofs%d.sock", i)) }

// shareArgs are QEMU's arguments for the shares: guest memory shared with
// virtiofsd, and one vhost-user-fs device per share.
func shareArgs(c *bootConfig) []string {
	if len(c.Shares) == 0 {
		return nil
	}
	var args []string
	// virtiofsd maps the guest's memory: it must be shared. The warm-start
	// memory file (snapshot.go) is, when it is the VM's own; a second
	// backend next to it would give the guest two RAMs and QEMU refuses.
	if c.Warm.MemPath == "" || !c.Warm.Shared {
		args = append(args,
			"-object", fmt.Sprintf("memory-backend-memfd,id=mbshmem,size=%dM,share=on", c.MemoryMiB),
			"-numa", "node,memdev=mbshmem")
	}
	for i, sh := range c.Shares {
		id := fmt.Sprintf("vfs%d", i)
		args = append(args,
			"-chardev", "socket,id="+id+",path="+disk.EscapeOpt(shareSocket(c, i)),
			"-device", "vhost-user-fs-pci,queue-size=1024,chardev="+id+",tag="+sh.Tag)
	}
	return args
}

// virtiofsdArgs are virtiofsd's arguments for one share. QEMU's own
// virtiofsd takes -o options; the Rust one takes flags.
func virtiofsdArgs(bin, socket string, sh qemuShare) []string {
	if strings.HasPrefix(bin, "/usr/lib/qemu/") {
		return []string{"--socket-path=" + socket, "-o", "source=" + sh.Host, "-o", "cache=auto"}
	}
	args := []string{"--socket-path=" + socket, "--shared-dir=" + sh.Host, "--cache=auto"}
	if sh.ReadOnly {
		args = append(args, "--readonly")
	}
	return args
}

// shareWait bounds the wait for virtiofsd's socket.
const shareWait = 10 * time.Second

// startShares starts a virtiofsd per share and waits for their sockets.
// Each exits once QEMU disconnects; stop kills those still running (QEMU
// did not start).
func startShares(ctx context.Context, log *slog.Logger, c *bootConfig) (stop func(), err error) {
	var cmds []*exec.Cmd
	stop = func() {
		for _, cmd := range cmds {
			if cmd.Process != nil {
				cmd.Process.Kill()
			}
		}
	}
	if len(c.Shares) == 0 {
		return stop, nil
	}
	bin, err := findVirtiofsd()
	if err != nil {
		return stop, err
	}
	for i, sh := range c.Shares {
		sock := shareSocket(c, i)
		if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
			stop()
			return func() {}, fmt.Errorf("remove stale %s: %w", sock, err)
		}
		cmd := exec.Command(bin, virtiofsdArgs(bin, sock, sh)...)
		cmd.Dir = c.Dir
		tail := newTailWriter(log.With("virtiofsd", sh.Tag), 10)
		cmd.Stdout, cmd.Stderr = tail, tail
		log.Info("starting virtiofsd", "tag", sh.Tag, "host", sh.Host, "binary", bin)
		done, err := startProcess(cmd)
		if err != nil {
			stop()
			return func() {}, fmt.Errorf("start virtiofsd for share %s: %w", sh.Host, err)
		}
		cmds = append(cmds, cmd)
		wctx, cancel := context.WithTimeout(ctx, shareWait)
		err = waitSocket(wctx, sock, done)
		cancel()
		if err != nil {
			stop()
			return func() {}, fmt.Errorf("virtiofsd for share %s: %w: %s", sh.Host, err, tail.String())
		}
	}
	return stop, nil
}

// waitSocket waits for path to appear, failing when done reports the
// process gone.
func waitSocket(ctx context.Context, path string, done <-chan error) error {
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case err := <-done:
			return fmt.Errorf("exited before opening its socket (%v)", err)
		case <-ctx.Done():
			return fmt.Errorf("no socket %s within %v", path, shareWait)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

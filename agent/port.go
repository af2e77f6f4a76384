package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// portName is the virtio-serial port QEMU's guest agent channel is named.
const portName = "org.qemu.guest_agent.0"

// idleBackoff is how long a read waits again after the port said no host is
// connected (read returns 0 and poll POLLHUP at once, so a plain loop would
// spin at 100 % CPU).
const idleBackoff = 100 * time.Millisecond

var errNoPort = errors.New("no virtio-serial port named " + portName)

// findPort finds the agent's virtio-serial port: /dev/virtio-ports/<name>
// when udev made it, else the /dev/vportNpM whose
// /sys/class/virtio-ports/vportNpM/name holds the name.
func findPort(devDir, sysDir string) (string, error) {
	p := filepath.Join(devDir, "virtio-ports", portName)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	names, _ := filepath.Glob(filepath.Join(sysDir, "class", "virtio-ports", "*", "name"))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil || strings.TrimSpace(string(b)) != portName {
			continue
		}
		dev := filepath.Join(devDir, filepath.Base(filepath.Dir(n)))
		if _, err := os.Stat(dev); err != nil {
			return "", fmt.Errorf("%w: %s names it but %s is missing (is devtmpfs mounted on %s?)", errNoPort, n, dev, devDir)
		}
		return dev, nil
	}
	return "", fmt.Errorf("%w under %s/virtio-ports or %s/class/virtio-ports (is the virtio_console module loaded?)", errNoPort, devDir, sysDir)
}

// servePort serves the port at path until it fails or ctx is done.
func (s *server) servePort(ctx context.Context, path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %v", errNoPort, err)
	}
	if err != nil {
		return fmt.Errorf("open guest agent port: %w", err)
	}
	defer f.Close()
	stop := context.AfterFunc(ctx, func() {
		if f.SetDeadline(time.Now()) != nil {
			f.Close()
		}
	})
	defer stop()
	s.log.Info("serving the guest agent protocol", "device", path)
	err = s.serveStream(ctx, &portReader{ctx: ctx, f: f}, f)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// portReader reads a virtio-serial port. A read of 0 bytes means no host is
// connected: it waits idleBackoff and returns errRetry, so the server drops
// half-read input from the host that left and does not spin.
type portReader struct {
	ctx context.Context
	f   *os.File
}

func (p *portReader) Read(b []byte) (int, error) {
	n, err := p.f.Read(b)
	if n > 0 {
		return n, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		if !sleepCtx(p.ctx, idleBackoff) {
			return 0, p.ctx.Err()
		}
		return 0, errRetry
	}
	return 0, err
}

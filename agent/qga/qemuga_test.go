package qga_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mbvm/mb/agent/qga"
	"github.com/mbvm/mb/agent/qgaproto"
	"github.com/mbvm/mb/internal/testenv"
)

// dangerousRPCs are blocked in the qemu-ga the tests run on this machine:
// it runs as the test's user on the host, not in a guest.
var dangerousRPCs = []string{
	"guest-shutdown", "guest-suspend-disk", "guest-suspend-ram", "guest-suspend-hybrid",
	"guest-set-time", "guest-fsfreeze-freeze", "guest-fsfreeze-freeze-list", "guest-fsfreeze-thaw",
	"guest-fstrim", "guest-set-vcpus", "guest-set-memory-blocks", "guest-set-user-password",
	"guest-ssh-add-authorized-keys", "guest-ssh-remove-authorized-keys", "guest-file-write",
}

// startQemuGA runs the stock qemu-guest-agent on a unix socket. Without it
// the test ends through testenv.Need.
func startQemuGA(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("qemu-ga")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/qemu-ga"); serr == nil {
			bin, err = "/usr/sbin/qemu-ga", nil
		}
	}
	if err != nil {
		testenv.Need(t, fmt.Sprintf("qemu-ga is not installed (apt-get install qemu-guest-agent): %v", err))
	}
	dir, err := os.MkdirTemp("", "mbqga-")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "qga.sock")
	cmd := exec.Command(bin, "-m", "unix-listen", "-p", sock, "-t", dir, "-f", filepath.Join(dir, "qga.pid"),
		"-b", strings.Join(dangerousRPCs, ","))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu-ga: %v", err)
	}
	t.Cleanup(func() {
		alive := cmd.Process.Signal(syscall.Signal(0)) == nil
		cmd.Process.Kill()
		err := cmd.Wait()
		os.RemoveAll(dir)
		if t.Failed() {
			t.Logf("qemu-ga alive at the end: %v; wait: %v; output:\n%s", alive, err, out.String())
		}
	})
	waitFor(t, func() bool { _, err := os.Stat(sock); return err == nil }, "qemu-ga's socket")
	return sock
}

func TestClientAgainstStockQemuGA(t *testing.T) {
	c := newClient(t, startQemuGA(t), long)
	ctx := context.Background()
	if _, err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	info, err := c.Info(ctx)
	if err != nil || info.IsMBAgent() || !info.Supports("guest-exec") {
		t.Fatalf("qgaproto.Info = %+v, %v", info, err)
	}
	osi, err := c.OSInfo(ctx)
	if err != nil || osi.KernelRelease == "" {
		t.Errorf("qgaproto.OSInfo = %+v, %v", osi, err)
	}
	ifaces, err := c.Interfaces(ctx)
	if err != nil || len(ifaces) == 0 || len(ifaces[0].IPAddresses) == 0 {
		t.Errorf("Interfaces = %+v, %v", ifaces, err)
	}
	res, err := c.Exec(ctx, qga.ExecRequest{Argv: []string{"sh", "-c", "cat /proc/version; exit 7"}, Stdin: []byte("x")})
	if err != nil || res.ExitCode != 7 || !strings.HasPrefix(string(res.Stdout), "Linux version") {
		t.Errorf("exec = %+v, %v", res, err)
	}
	// qemu-ga cannot kill on a timeout: the host gives up and says so.
	_, err = c.Exec(ctx, qga.ExecRequest{Argv: []string{"sleep", "2"}, Timeout: 200 * time.Millisecond})
	if !errors.Is(err, qga.ErrExecTimeout) || !strings.Contains(err.Error(), "may still run") {
		t.Errorf("exec with a timeout = %v, want ErrExecTimeout saying the process may live on", err)
	}

	raw, err := c.Metrics(ctx)
	var m qgaproto.Metrics
	if err != nil || json.Unmarshal(raw, &m) != nil {
		t.Fatalf("qgaproto.Metrics = %s, %v", raw, err)
	}
	if m.Source != "qemu-ga" || m.CPU == nil || m.CPU.Total() == 0 || m.Memory == nil || m.Memory.TotalBytes == 0 ||
		len(m.LoadAvg) != 3 || m.UptimeSeconds <= 0 || len(m.Interfaces) == 0 {
		t.Errorf("qgaproto.Metrics from qemu-ga = %s", raw)
	}

	// guest-shutdown is blocked here: the refusal comes back as an error
	// and the channel stays usable.
	if err := c.Shutdown(ctx, "powerdown"); err == nil || !strings.Contains(err.Error(), "disabled") {
		t.Errorf("Shutdown = %v, want qemu-ga's refusal", err)
	}
	if _, err := c.Ping(ctx); err != nil {
		t.Errorf("Ping after a refused shutdown: %v", err)
	}

	w := qga.NewWatcher(c, qga.WatcherOptions{Interval: 100 * time.Millisecond, Logger: quietLogger()})
	wctx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { w.Run(wctx); close(stopped) }()
	defer func() { cancel(); <-stopped }()
	waitFor(t, func() bool { i := w.Info(); return i.State == qga.StateOK && i.Kind == "qemu-ga" && i.OS != "" }, "qemu-ga ok")
}

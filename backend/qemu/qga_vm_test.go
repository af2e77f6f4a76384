package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/agent/qga"
	"github.com/mbvm/mb/agent/qgaproto"
	"github.com/mbvm/mb/bench/testvm"
	"github.com/mbvm/mb/vmhost"
)

// TestStockQemuGAInVM boots the mini image's qemu-ga variant (busybox init
// and Debian's stock qemu-guest-agent, built by make image) and drives it
// through the same host code as mb-agent: liveness, IP addresses, exec,
// metrics and a stop through guest-shutdown.
func TestStockQemuGAInVM(t *testing.T) {
	h, m := testvm.Image(t, "mini-qga")
	vmSlot(t)
	opts := vmOptions(t, testImage{home: h, manifest: m}, "qgavm", "")
	opts.Spec.Image = "mini-qga"
	c := startVM(t, opts)

	waitAgent(t, c, "qemu-ga ok", func(i *vmhost.AgentInfo) bool { return i.State == qga.StateOK })
	waitAgent(t, c, "the guest IP 10.0.2.15", func(i *vmhost.AgentInfo) bool { return slices.Contains(i.IPs, "10.0.2.15") })
	if info := c.AgentInfo(); info.Kind != "qemu-ga" {
		t.Errorf("agent kind = %q, want qemu-ga (%+v)", info.Kind, info)
	}

	ctx, cancel := context.WithTimeout(context.Background(), bootDeadline)
	defer cancel()
	res, err := c.Exec(ctx, vmhost.ExecRequest{Argv: []string{"/bin/sh", "-c", "echo hi; echo oops >&2; exit 7"}})
	if err != nil || res.ExitCode != 7 || string(res.Stdout) != "hi\n" || string(res.Stderr) != "oops\n" {
		t.Errorf("exec through qemu-ga = %+v, %v; want exit 7 with hi / oops", res, err)
	}
	// qemu-ga takes stdin in one request: 512 KiB works, more is refused
	// as too large (never a failed start).
	stdin := bytes.Repeat([]byte("0123456789abcdef"), qga.MaxStockStdin/16)
	res, err = c.Exec(ctx, vmhost.ExecRequest{Argv: []string{"wc", "-c"}, Stdin: stdin})
	if err != nil || strings.TrimSpace(string(res.Stdout)) != strconv.Itoa(len(stdin)) {
		t.Errorf("exec with %d bytes of stdin through qemu-ga = %+v, %v", len(stdin), res, err)
	}
	if _, err := c.Exec(ctx, vmhost.ExecRequest{Argv: []string{"wc", "-c"}, Stdin: append(stdin, 'x')}); !errors.Is(err, vmhost.ErrExecStdinTooLarge) {
		t.Errorf("exec with stdin over qemu-ga's limit = %v, want vmhost.ErrExecStdinTooLarge", err)
	}
	raw, err := c.Metrics(ctx)
	var mt qgaproto.Metrics
	if err != nil || json.Unmarshal(raw, &mt) != nil || mt.Source != "qemu-ga" {
		t.Errorf("metrics through qemu-ga = %s, %v; want source qemu-ga", raw, err)
	}

	// A restored guest's clock: busybox's date has no relative form, so
	// setGuestClock falls back to qemu-ga's guest-set-time, and the clock
	// is right either way.
	res, err = c.Exec(ctx, vmhost.ExecRequest{Argv: []string{"date", "-s", "2020-01-01 00:00:00"}})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("set the guest's clock back: %+v, %v", res, err)
	}
	client := c.qgaClient()
	if client == nil {
		t.Fatal("the VM's agent has no QGA client")
	}
	how, err := c.setGuestClock(ctx, client)
	if how != "guest-set-time" {
		t.Errorf("setGuestClock on busybox = %q, %v; want the guest-set-time fallback", how, err)
	}
	off, err := guestClockOffset(ctx, client)
	if err != nil || off > 2*time.Second || off < -2*time.Second {
		t.Errorf("after setGuestClock the guest's clock is %v off (%v), want within 2 s", off, err)
	}

	sctx, scancel := context.WithTimeout(context.Background(), stopDeadline)
	defer scancel()
	r, err := c.StopMode(sctx, 60*time.Second, vmhost.ModeAuto)
	if err != nil || r.StoppedBy != vmhost.ModeAgent {
		t.Errorf("stop = %+v, %v; want stopped_by agent (guest-shutdown through qemu-ga)", r, err)
	}
	if err := waitExit(t, c); err != nil {
		t.Errorf("Wait after a qemu-ga shutdown = %v, want a clean exit", err)
	}
}

//go:build linux

package guestinit

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/bench/testvm"
	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/vm/image"
)

// TestVMQemuGAVariant boots the mini image's qemu-ga variant
// (scripts/mkimage-mini.sh --variant qemu-ga: busybox init and Debian's
// stock qemu-guest-agent) and checks that what the script put together
// works: the agent answers, exec keeps exit statuses, eth0 has the
// user-mode address, and guest-shutdown powers the guest off cleanly
// through the /sbin/shutdown the script provides. The variant is not part
// of make image, so without it the test is skipped.
func TestVMQemuGAVariant(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skipf("x86_64 only; this host is %s", runtime.GOARCH)
	}
	h, err := layout.Dir()
	if err != nil {
		t.Fatal(err)
	}
	m, err := image.Load(h, "mini-qga")
	if err != nil {
		testvm.Missing(t, fmt.Sprintf("the qemu-ga variant of the mini image is not built: %v (run scripts/mkimage-mini.sh --variant qemu-ga)", err))
	}
	if m.Agent != "qemu-ga" || m.ReadyLine == "" {
		t.Fatalf("manifest of mini-qga: agent %q, ready line %q; want qemu-ga and a ready line", m.Agent, m.ReadyLine)
	}
	vm := bootMini(t, m, "mb.hostname=qga-variant")
	vm.waitSerial(t, m.ReadyLine)
	ctx, cancel := context.WithTimeout(context.Background(), bootDeadline)
	defer cancel()
	q, err := dialQGA(ctx, vm.agentSock)
	if err != nil {
		t.Fatal(err)
	}
	defer q.close()
	if err := q.sync(ctx); err != nil {
		t.Fatalf("qemu-ga did not answer: %v; console:\n%s", err, tail(vm.serialLog()))
	}

	var info struct {
		Version string `json:"version"`
	}
	if err := q.call(ctx, "guest-info", nil, &info); err != nil {
		t.Fatal(err)
	}
	t.Logf("qemu-ga %s answered %s after qemu started", info.Version, time.Since(vm.started).Round(time.Millisecond))
	var hostName struct {
		HostName string `json:"host-name"`
	}
	if err := q.call(ctx, "guest-get-host-name", nil, &hostName); err != nil {
		t.Fatal(err)
	}
	if hostName.HostName != "qga-variant" {
		t.Errorf("host name %q, want qga-variant (from mb.hostname=)", hostName.HostName)
	}
	st, err := q.run(ctx, "/bin/sh", "-c", "exit 7")
	if err != nil {
		t.Fatal(err)
	}
	if st.ExitCode == nil || *st.ExitCode != 7 {
		t.Errorf("exit status of `exit 7` = %v, want 7", st.ExitCode)
	}
	var ifaces []struct {
		Name string `json:"name"`
		IPs  []struct {
			Addr string `json:"ip-address"`
		} `json:"ip-addresses"`
	}
	if err := q.call(ctx, "guest-network-get-interfaces", nil, &ifaces); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(ifaces)
	if !strings.Contains(string(raw), `"10.0.2.15"`) {
		t.Errorf("no interface has 10.0.2.15: %s", raw)
	}

	// guest-shutdown sends no reply on success.
	if err := q.send("guest-shutdown", map[string]any{"mode": "powerdown"}); err != nil {
		t.Fatal(err)
	}
	if err := vm.waitExit(t); err != nil {
		t.Fatalf("qemu did not exit cleanly after guest-shutdown: %v; console:\n%s", err, tail(vm.serialLog()))
	}
	if log := vm.serialLog(); !strings.Contains(log, "mb-mini-qga: poweroff") {
		t.Errorf("console lacks the variant's shutdown line:\n%s", tail(log))
	}
}

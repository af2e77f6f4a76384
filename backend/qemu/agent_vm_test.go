package qemu

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/agent/qga"
	"github.com/mbvm/mb/agent/qgaproto"
	"github.com/mbvm/mb/vmhost"
)

// TestAgentInVM boots the mini image and uses its mb-agent the way a user
// does: wait for it, run commands, read facts and metrics, stop through it.
// With MB_MEASURE=1 it also logs the exec round trip and the agent's
// resident memory and idle CPU inside the guest.
func TestAgentInVM(t *testing.T) {
	img := miniImage(t)
	vmSlot(t)
	c := startVM(t, vmOptions(t, img, "agentvm", ""))
	started := time.Now()
	readyLine := make(chan time.Time, 1)
	if os.Getenv("MB_MEASURE") == "1" {
		go func() {
			for time.Since(started) < bootDeadline {
				if data, _ := os.ReadFile(c.cfg.path(serialLogName)); strings.Contains(string(data), img.readyLine()) {
					readyLine <- time.Now()
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}

	waitAgent(t, c, "agent ok", func(i *vmhost.AgentInfo) bool { return i.State == qga.StateOK })
	if os.Getenv("MB_MEASURE") == "1" {
		ok := time.Now()
		select {
		case r := <-readyLine:
			t.Logf("MEASURE Start returned -> serial %q %v; -> agent ok %v (ok %v after the ready line, 100 ms polling)",
				img.readyLine(), r.Sub(started).Round(time.Millisecond), ok.Sub(started).Round(time.Millisecond), ok.Sub(r).Round(time.Millisecond))
		case <-time.After(10 * time.Second):
			t.Logf("MEASURE agent ok %v after Start returned; no %q line seen", ok.Sub(started).Round(time.Millisecond), img.readyLine())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), bootDeadline)
	defer cancel()

	res, err := c.Exec(ctx, vmhost.ExecRequest{Argv: []string{"cat", "/proc/version"}})
	if err != nil || !strings.HasPrefix(string(res.Stdout), "Linux version") || res.ExitCode != 0 {
		t.Fatalf("cat /proc/version = %+v, %v", res, err)
	}
	res, err = c.Exec(ctx, vmhost.ExecRequest{Argv: []string{"sh", "-c", "exit 7"}})
	if err != nil || res.ExitCode != 7 {
		t.Errorf("sh -c 'exit 7' = %+v, %v; want exit code 7", res, err)
	}
	res, err = c.Exec(ctx, vmhost.ExecRequest{Argv: []string{"sh", "-c", "sleep 1000 & echo started"}})
	if err != nil || string(res.Stdout) != "started\n" {
		t.Errorf("command backgrounding a sleeper = %+v, %v; want it to return", res, err)
	}
	t0 := time.Now()
	res, err = c.Exec(ctx, vmhost.ExecRequest{Argv: []string{"head", "-c", "20971520", "/dev/zero"}})
	switch {
	case err != nil:
		t.Errorf("20 MiB of output: %v", err)
	case !res.OutTruncated || len(res.Stdout) != 16<<20:
		t.Errorf("20 MiB of output: truncated %v, %d bytes; want the flag and 16 MiB", res.OutTruncated, len(res.Stdout))
	}
	t.Logf("20 MiB exec (16 MiB returned) took %v", time.Since(t0).Round(time.Millisecond))
	res, err = c.Exec(ctx, vmhost.ExecRequest{Argv: []string{"cat"}, Stdin: []byte("through\x00stdin")})
	if err != nil || string(res.Stdout) != "through\x00stdin" {
		t.Errorf("cat with stdin = %+v, %v", res, err)
	}

	waitAgent(t, c, "the guest IP 10.0.2.15", func(i *vmhost.AgentInfo) bool { return slices.Contains(i.IPs, "10.0.2.15") })
	info := c.AgentInfo()
	if info.Kind != "mb-agent" || info.LastSeen == nil || info.Hostname == "" || info.OS == "" {
		t.Errorf("AgentInfo = %+v", info)
	}

	raw, err := c.Metrics(ctx)
	var m qgaproto.Metrics
	if err != nil || json.Unmarshal(raw, &m) != nil || m.Source != "mb-agent" || m.CPU == nil || m.Memory == nil || m.Memory.TotalBytes == 0 {
		t.Errorf("Metrics = %s, %v", raw, err)
	}

	if os.Getenv("MB_MEASURE") == "1" {
		measureAgent(t, c)
	}

	sctx, scancel := context.WithTimeout(context.Background(), stopDeadline)
	defer scancel()
	r, err := c.StopMode(sctx, 60*time.Second, vmhost.ModeAuto)
	if err != nil || r.StoppedBy != vmhost.ModeAgent {
		t.Errorf("Stop = %+v, %v; want stopped_by agent", r, err)
	}
	if err := waitExit(t, c); err != nil {
		t.Errorf("Wait after an agent stop = %v, want a clean exit", err)
	}
	if got := c.AgentInfo().State; got != qga.StateNone {
		t.Errorf("agent state after exit = %q, want none", got)
	}
}

func waitAgent(t *testing.T, c *Controller, what string, ok func(*vmhost.AgentInfo) bool) {
	t.Helper()
	deadline := time.Now().Add(bootDeadline)
	for !ok(c.AgentInfo()) {
		if time.Now().After(deadline) || c.isExited() {
			t.Fatalf("no %s after %s: %+v (state %s)", what, bootDeadline, c.AgentInfo(), c.State())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// measureAgent logs the round trip of `true`, and the agent's RSS and CPU
// use over 20 idle seconds, read from /proc inside the guest (the exec'd
// shell's parent is the agent).
func measureAgent(t *testing.T, c *Controller) {
	ctx := context.Background()
	var rtts []time.Duration
	for range 20 {
		t0 := time.Now()
		if _, err := c.Exec(ctx, vmhost.ExecRequest{Argv: []string{"true"}}); err != nil {
			t.Fatalf("exec true: %v", err)
		}
		rtts = append(rtts, time.Since(t0))
	}
	slices.Sort(rtts)
	t.Logf("MEASURE exec true round trip: min %v median %v max %v (20 runs, TCG)", rtts[0], rtts[len(rtts)/2], rtts[len(rtts)-1])

	ticks := func() (uint64, string) {
		res, err := c.Exec(ctx, vmhost.ExecRequest{Argv: []string{"sh", "-c", "cat /proc/$PPID/stat; grep VmRSS /proc/$PPID/status"}})
		if err != nil {
			t.Fatalf("read agent stats: %v", err)
		}
		lines := strings.SplitN(string(res.Stdout), "\n", 2)
		f := strings.Fields(lines[0][strings.LastIndex(lines[0], ")")+2:])
		ut, _ := strconv.ParseUint(f[11], 10, 64)
		st, _ := strconv.ParseUint(f[12], 10, 64)
		return ut + st, strings.TrimSpace(lines[1])
	}
	idle := 20 * time.Second
	a, rss := ticks()
	time.Sleep(idle)
	b, rss2 := ticks()
	t.Logf("MEASURE mb-agent %s then %s; CPU over %v idle (pinged every %v): %d ticks = %.2f %% of one CPU",
		rss, rss2, idle, qga.DefaultInterval, b-a, float64(b-a)/100/idle.Seconds()*100)
}

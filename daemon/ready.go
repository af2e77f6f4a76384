package daemon

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"sync"
	"time"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/vm/image"
	"github.com/mbvm/mb/vm/sshkeys"
	"github.com/mbvm/mb/vmhost"
)

// SerialLogName is the guest console log (the qemu backend's; internal/layout
// owns the name).
const SerialLogName = layout.SerialLog

// isReady decides whether a running guest is ready: an image with an agent
// is ready when the agent answers; one without, when its ready line is on
// the console, or, for a disk image (a distribution booted with a
// cloud-init seed), when an SSH handshake verifies the host key mb
// injected; a VM without an image manifest as soon as it runs.
func isReady(state string, m *image.Manifest, agent *vmhost.AgentInfo, serialHas func(string) bool, sshOK func() bool) bool {
	if state != api.StateRunning {
		return false
	}
	agentOK := agent != nil && agent.State == "ok"
	switch {
	case m == nil:
		return true
	case m.Agent == "mb-agent" || m.Agent == "qemu-ga":
		return agentOK
	case m.ReadyLine != "":
		return agentOK || serialHas(m.ReadyLine)
	case m.Disk != "":
		return agentOK || sshOK()
	}
	return true
}

// defaultAppWait bounds the fast agent pings of a start with wait=app and
// no timeout: the CLI's default --timeout.
const defaultAppWait = 2 * time.Minute

// sshProbeInterval spaces the SSH readiness probes of one VM.
const sshProbeInterval = time.Second

// sshReady does one SSH handshake with the VM at 127.0.0.1:port, at most
// once per sshProbeInterval, and reports whether the guest presented the
// injected host key and accepted mb's client key.
func (d *Daemon) sshReady(ctx context.Context, v *vm, port int) bool {
	if port == 0 {
		return false
	}
	v.mu.Lock()
	if time.Since(v.lastSSHProbe) < sshProbeInterval {
		v.mu.Unlock()
		return false
	}
	v.lastSSHProbe = time.Now()
	v.mu.Unlock()
	keys, err := sshkeys.Load(v.dir)
	if err != nil {
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return sshkeys.Probe(pctx, keys, "", port) == nil
}

// fileContains reports whether path holds line (a substring search over
// the file, read in chunks).
func fileContains(path, line string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	want := []byte(line)
	for sc.Scan() {
		if bytes.Contains(sc.Bytes(), want) {
			return true
		}
	}
	return false
}

// view returns the API view of v, asking its vmhost (status, or info when
// detailed) for live facts when it runs.
func (d *Daemon) view(ctx context.Context, v *vm, detailed bool) api.VM {
	out := v.snapshot()
	out.Alerts = d.vmAlerts(v.name)
	r := v.current()
	if r == nil {
		return out
	}
	method := vmhost.MethodStatus
	if detailed {
		method = vmhost.MethodInfo
	}
	// While a client waits for the guest's mb.ready, have the agent
	// pinged often so that it shows at once.
	v.mu.Lock()
	poll := v.waitApp != "" && time.Now().Before(v.waitUntil)
	v.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	resp, err := vmhost.NewClient(v.socket()).Call(cctx, vmhost.Request{Method: method, AgentPoll: poll})
	cancel()
	if err != nil {
		if out.State == api.StateRunning {
			out.Reason = "vmhost does not answer: " + err.Error()
		}
		return out
	}
	if (out.State == api.StateRunning || out.State == api.StateStarting) && resp.State != "" {
		out.State = daemonState(resp.State)
		if out.State == api.StateRunning {
			// A start whose client went away, or an adopted vmhost that
			// was still booting, reached running meanwhile.
			d.markRunning(v, r)
			out.Reason = ""
		}
	}
	if resp.SSHPort != 0 {
		out.SSHPort = resp.SSHPort
	}
	if resp.Backend != "" {
		out.Backend = resp.Backend
	}
	out.Agent = resp.Agent
	if resp.Agent != nil {
		out.IPs = resp.Agent.IPs
	}
	if poll && out.AppReady(v.waitApp) {
		v.mu.Lock()
		v.waitApp = ""
		v.mu.Unlock()
	}
	if detailed {
		out.Details = resp.Details
		out.Paths = resp.Paths
		if resp.StartedAt != nil {
			t := *resp.StartedAt
			out.StartedAt = &t
			out.UptimeSeconds = resp.UptimeSeconds
		}
	}
	v.mu.Lock()
	m, ready, cur := v.manifest, v.ready, v.cur
	v.mu.Unlock()
	if !ready && cur == r {
		ready = isReady(out.State, m, resp.Agent, func(line string) bool {
			return fileContains(v.file(SerialLogName), line)
		}, func() bool { return d.sshReady(ctx, v, out.SSHPort) })
		if ready {
			v.mu.Lock()
			if v.cur == r {
				v.ready = true
			}
			v.mu.Unlock()
		}
	}
	out.Ready = ready && out.State == api.StateRunning
	return out
}

// viewAll returns every VM, asking the running vmhosts in parallel.
func (d *Daemon) viewAll(ctx context.Context) []api.VM {
	vms := d.list()
	out := make([]api.VM, len(vms))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i, v := range vms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = d.view(ctx, v, false)
		}()
	}
	wg.Wait()
	return out
}

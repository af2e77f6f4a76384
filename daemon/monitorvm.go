package daemon

import (
	"context"
	"fmt"
	"strings"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/monitor/web"
)

// dashboardVMs gives the monitor's dashboard the daemon's VMs: their
// details for a host page, and start, stop and restart for its buttons.
type dashboardVMs struct{ d *Daemon }

// VMDetails implements service.VMControl.
func (c dashboardVMs) VMDetails(ctx context.Context, name string) ([]web.KV, bool, bool) {
	v := c.d.lookup(name)
	if v == nil {
		return nil, false, false
	}
	out := c.d.view(ctx, v, false)
	kv := []web.KV{{K: "State", V: out.State + reasonText(out.Reason)}}
	add := func(k, v string) {
		if v != "" {
			kv = append(kv, web.KV{K: k, V: v})
		}
	}
	add("Image", out.Image)
	if out.CPUs > 0 {
		add("CPUs", fmt.Sprint(out.CPUs))
	}
	add("Memory", out.Memory)
	add("Backend", out.Backend)
	add("Restart policy", out.Restart)
	if out.SSHPort > 0 {
		add("SSH", fmt.Sprintf("127.0.0.1:%d", out.SSHPort))
	}
	add("IP addresses", strings.Join(out.IPs, ", "))
	if out.StartedAt != nil {
		add("Started", out.StartedAt.Local().Format("2006-01-02 15:04:05"))
	}
	if out.Restarts > 0 {
		add("Restarts", fmt.Sprint(out.Restarts))
	}
	if out.UserStopped {
		add("Stopped by", "a user")
	}
	if a := out.Agent; a != nil {
		add("Agent", agentText(a.Kind, a.State, a.Hostname, a.OS))
	}
	return kv, out.State == api.StateRunning || out.State == api.StateStarting, true
}

func reasonText(r string) string {
	if r == "" {
		return ""
	}
	return " (" + r + ")"
}

func agentText(parts ...string) string {
	var keep []string
	for _, p := range parts {
		if p != "" {
			keep = append(keep, p)
		}
	}
	return strings.Join(keep, ", ")
}

// VMAction implements service.VMControl.
func (c dashboardVMs) VMAction(ctx context.Context, name, action string) error {
	v := c.d.lookup(name)
	if v == nil {
		return fmt.Errorf("no VM %q", name)
	}
	switch action {
	case "start":
		_, err := c.d.startVM(ctx, v, 0, false)
		return err
	case "stop":
		_, err := c.d.stopVM(ctx, v, 0, false)
		return err
	case "restart":
		if _, err := c.d.stopVM(ctx, v, 0, false); err != nil {
			return err
		}
		_, err := c.d.startVM(ctx, v, 0, false)
		return err
	}
	return fmt.Errorf("unknown VM action %q (start, stop or restart)", action)
}

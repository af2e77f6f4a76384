package daemon

import (
	"context"
	"time"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/vmhost"
)

// guestMsgInterval is how often the daemon asks a running VM's vmhost for
// messages from guest programs. vmhost answers from what its agent watcher
// already collected, so this costs the guest nothing; the guest is asked
// no more often than its agent_interval.
const guestMsgInterval = time.Second

// collectGuestMessages publishes the messages guest programs send through
// mb-agent's command socket, as guest-event (mb.event) and guest-ready
// (mb.ready) events, until run r ends. With skipOld (an adopted vmhost,
// whose messages an earlier daemon may have published) it starts after
// the messages already collected.
func (d *Daemon) collectGuestMessages(v *vm, r *run, skipOld bool) {
	c := vmhost.NewClient(v.socket())
	var after uint64
	first := true
	t := time.NewTicker(guestMsgInterval)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-r.exited:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(d.ctx, 3*time.Second)
		resp, err := c.Call(ctx, vmhost.Request{Method: vmhost.MethodMessages, After: after})
		cancel()
		if err != nil {
			if resp != nil && (resp.Code == vmhost.CodeNotAvailable || resp.Code == vmhost.CodeUnknownMethod) {
				return // no agent, or an older vmhost: nothing will come
			}
			continue
		}
		if resp.Agent != nil && resp.Agent.Kind == "qemu-ga" {
			return // a stock agent has no command socket
		}
		if first && skipOld {
			after, first = resp.MessagesSeq, false
			continue
		}
		first = false
		if resp.MessagesSeq < after {
			after = 0 // a new vmhost numbers from 1 again
		}
		for _, m := range resp.Messages {
			after = max(after, m.Seq)
			switch m.Kind {
			case "event":
				d.events.publish(api.Event{VM: v.name, Type: api.EventGuest, Level: m.Level, Reason: m.Text, Time: m.Time})
			case "ready":
				reason := m.Name
				if m.Detail != "" {
					reason += ": " + m.Detail
				}
				d.events.publish(api.Event{VM: v.name, Type: api.EventGuestReady, Reason: reason, Time: m.Time})
			}
		}
	}
}

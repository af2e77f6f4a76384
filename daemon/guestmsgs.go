package daemon

import (
	"context"
	"time"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/monitor"
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
				d.noteGuestEvent(v.name, m)
			case "ready":
				reason := m.Name
				if m.Detail != "" {
					reason += ": " + m.Detail
				}
				d.events.publish(api.Event{VM: v.name, Type: api.EventGuestReady, Reason: reason, Time: m.Time})
			case "metric":
				d.observeGuestMetric(v.name, m)
			}
		}
	}
}

// observeGuestMetric hands the monitor the fields a guest program sent
// with mb.metric, as the data of its plugin on the VM's host, so that
// thresholds apply to them like to any plugin's. The agent watcher already
// capped, cleaned and rate-limited them.
func (d *Daemon) observeGuestMetric(name string, m vmhost.GuestMessage) {
	d.mu.Lock()
	mon := d.mon
	d.mu.Unlock()
	if mon == nil || m.Plugin == "" || len(m.Fields) == 0 {
		return
	}
	fields := make(map[string]any, len(m.Fields))
	for k, v := range m.Fields {
		fields[k] = v
	}
	ctx, cancel := context.WithTimeout(d.ctx, 5*time.Second)
	defer cancel()
	if err := mon.eng.Observe(ctx, monitor.Observation{Host: name, Source: SourceVM, Time: m.Time,
		Plugin: m.Plugin, Fields: fields}); err != nil {
		d.log.Warn("monitor: guest metric refused", "vm", name, "plugin", m.Plugin, "err", err)
	}
}

// noteGuestEvent puts a guest program's mb.event in the monitor's message
// stream (its journal and /api/0/messages), like hbc's -m messages.
func (d *Daemon) noteGuestEvent(name string, m vmhost.GuestMessage) {
	d.mu.Lock()
	mon := d.mon
	d.mu.Unlock()
	if mon == nil {
		return
	}
	msg := map[string]any{"host": name, "source": SourceVM, "type": api.EventGuest, "level": m.Level, "text": m.Text}
	if err := mon.svc.Note(m.Time, "", msg); err != nil {
		d.log.Warn("monitor: journal a guest event", "vm", name, "err", err)
	}
}

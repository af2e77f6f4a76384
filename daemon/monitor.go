package daemon

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/mbvm/mb/agent/qga"
	"github.com/mbvm/mb/agent/qgaproto"
	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/monitor"
	"github.com/mbvm/mb/monitor/config"
	"github.com/mbvm/mb/monitor/threshold"
	"github.com/mbvm/mb/vmhost"
)

// SourceVM is the monitor source of the VMs the daemon runs.
const SourceVM = "vm"

// Bounds of the feeder's work.
const (
	// feedConcurrency caps the VMs polled at once.
	feedConcurrency = 8
	// feedMinDeadline and feedMaxDeadline bound one VM's poll (status
	// and metrics): the metrics interval, within these.
	feedMinDeadline = 5 * time.Second
	feedMaxDeadline = 30 * time.Second
)

// vmFeeder feeds the monitor engine with the VMs the daemon runs. Every
// metrics interval it asks each running VM's vmhost for its status (the
// agent's liveness and RTT) and its metrics, mapped onto hbd's plugins;
// and it turns the daemon's lifecycle events into expected absences (a
// stop, a power-off, a restart under the policy), outages (a crash, an
// agent that stops answering) and removals (a deleted VM).
type vmFeeder struct {
	d   *Daemon
	eng *monitor.Engine
	log *slog.Logger
	// interval returns the metrics interval in force (it changes on a
	// reload).
	interval func() time.Duration

	// mu orders the engine calls: a poll's result is applied only if no
	// lifecycle event of its VM came in since the poll began (gen), so a
	// status read just before a crash never brings a crashed VM back up.
	mu      sync.Mutex
	gen     map[string]uint64
	mappers map[string]*metricsMapper
	// polling holds the VMs whose poll is under way: a slow VM is not
	// polled again before its last poll ended, so its samples stay in order.
	polling map[string]bool
}

func newVMFeeder(d *Daemon, eng *monitor.Engine, interval func() time.Duration, log *slog.Logger) *vmFeeder {
	return &vmFeeder{d: d, eng: eng, log: log, interval: interval, gen: map[string]uint64{},
		mappers: map[string]*metricsMapper{}, polling: map[string]bool{}}
}

// metricsInterval is the interval in force (the default for none).
func (f *vmFeeder) metricsInterval() time.Duration {
	if iv := f.interval(); iv > 0 {
		return iv
	}
	return config.DefaultMetricsInterval
}

// run feeds the engine until ctx ends.
func (f *vmFeeder) run(ctx context.Context) {
	_, events, cancel := f.d.events.subscribe()
	defer cancel()
	f.sync(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			f.event(ctx, ev)
		case at := <-timer.C:
			iv := f.metricsInterval()
			timer.Reset(iv)
			wg.Add(1)
			go func() {
				defer wg.Done()
				f.pollAll(ctx, at, iv)
			}()
		}
	}
}

// sync brings the engine in line with the VMs at start: hosts of VMs that
// no longer exist are removed, and VMs not running are stopped or down as
// their state says (running ones report at the first poll).
func (f *vmFeeder) sync(ctx context.Context) {
	names := map[string]bool{}
	for _, v := range f.d.list() {
		names[v.name] = true
		if v.current() != nil {
			continue
		}
		if _, known := f.eng.Host(v.name); !known {
			continue
		}
		s := v.snapshot()
		if s.State == api.StateCrashed && !s.UserStopped {
			f.apply(ctx, v.name, f.gen[v.name], func() error { return f.eng.MarkDown(ctx, v.name, "crashed: "+s.Reason) })
		} else {
			f.apply(ctx, v.name, f.gen[v.name], func() error { return f.eng.MarkStopped(ctx, v.name, stoppedReason(s.Reason)) })
		}
	}
	for _, h := range f.eng.Hosts() {
		if h.Source == SourceVM && len(h.Sources) <= 1 && !names[h.Name] {
			if err := f.eng.RemoveHost(ctx, h.Name); err != nil {
				f.log.Warn("monitor: remove the host of a VM gone while the daemon was down", "vm", h.Name, "err", err)
			}
		}
	}
}

func stoppedReason(r string) string {
	if r == "" {
		return "stopped"
	}
	return r
}

// event turns one lifecycle event into what it means to the monitor.
func (f *vmFeeder) event(ctx context.Context, ev api.Event) {
	if ev.VM == "" {
		return
	}
	f.mu.Lock()
	f.gen[ev.VM]++
	g := f.gen[ev.VM]
	f.mu.Unlock()
	switch ev.Type {
	case api.EventStopping:
		// Only the user (or a daemon stopping its VMs) stops a VM.
		f.apply(ctx, ev.VM, g, func() error { return f.eng.MarkStopped(ctx, ev.VM, "stopped by the user") })
	case api.EventStopped:
		// A clean end: a stop, or a guest power-off (restarted under
		// restart: always). Expected, not an outage.
		f.apply(ctx, ev.VM, g, func() error { return f.eng.MarkStopped(ctx, ev.VM, stoppedReason(ev.Reason)) })
	case api.EventCrashed:
		f.apply(ctx, ev.VM, g, func() error { return f.eng.MarkDown(ctx, ev.VM, "crashed: "+ev.Reason) })
	case api.EventGaveUp:
		f.apply(ctx, ev.VM, g, func() error { return f.eng.MarkDown(ctx, ev.VM, "crashed, not restarted: "+ev.Reason) })
	case api.EventDeleted:
		f.mu.Lock()
		delete(f.mappers, ev.VM)
		delete(f.gen, ev.VM)
		f.mu.Unlock()
		if err := f.eng.RemoveHost(ctx, ev.VM); err != nil && err != monitor.ErrNoHost {
			f.log.Warn("monitor: remove the host of a deleted VM", "vm", ev.VM, "err", err)
		}
	case api.EventRunning:
		// A new run: its counters start again.
		f.mu.Lock()
		delete(f.mappers, ev.VM)
		f.mu.Unlock()
	}
}

// apply makes the engine calls of fn unless a lifecycle event of the VM
// came in after generation g was read.
func (f *vmFeeder) apply(ctx context.Context, name string, g uint64, fn func() error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gen[name] != g || ctx.Err() != nil {
		return
	}
	if err := fn(); err != nil && ctx.Err() == nil {
		f.log.Warn("monitor: record a VM's state", "vm", name, "err", err)
	}
}

// pollAll polls every running VM, feedConcurrency at a time. at is when
// the poll was due: observations carry that time, so how long a poll takes
// never makes a VM look late.
func (f *vmFeeder) pollAll(ctx context.Context, at time.Time, iv time.Duration) {
	deadline := min(max(iv, feedMinDeadline), feedMaxDeadline)
	sem := make(chan struct{}, feedConcurrency)
	var wg sync.WaitGroup
	for _, v := range f.d.list() {
		if v.current() == nil {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		f.mu.Lock()
		busy := f.polling[v.name]
		f.polling[v.name] = true
		f.mu.Unlock()
		if busy {
			<-sem
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				f.mu.Lock()
				delete(f.polling, v.name)
				f.mu.Unlock()
				<-sem
			}()
			pctx, cancel := context.WithTimeout(ctx, deadline)
			defer cancel()
			f.poll(pctx, v, at, iv)
		}()
	}
	wg.Wait()
}

// poll reads one VM's status and metrics and hands them to the engine. A
// vmhost that does not answer is not reported: missing interval + grace
// makes the VM overdue, then down.
func (f *vmFeeder) poll(ctx context.Context, v *vm, at time.Time, iv time.Duration) {
	f.mu.Lock()
	g := f.gen[v.name]
	f.mu.Unlock()
	r := v.current()
	if r == nil {
		return
	}
	v.mu.Lock()
	state := v.state
	v.mu.Unlock()
	if state != api.StateRunning {
		return // starting or stopping: the events say what it is
	}
	c := vmhost.NewClient(v.socket())
	st, err := c.Call(ctx, vmhost.Request{Method: vmhost.MethodStatus})
	if err != nil {
		f.log.Debug("monitor: VM status", "vm", v.name, "err", err)
		return
	}
	if st.State != vmhost.StateRunning {
		return
	}
	obs := monitor.Observation{Host: v.name, Source: SourceVM, Time: at, Interval: iv}
	agent := st.Agent
	if agent != nil && agent.State == qga.StateUnresponsive {
		f.apply(ctx, v.name, g, func() error { return f.eng.MarkDown(ctx, v.name, "the guest agent does not answer") })
		return
	}
	if (agent == nil || agent.State == qga.StateNone) && hasAgent(v) {
		// Its image has an agent that has not answered yet: the guest is
		// booting (after a restart, say); it is up once the agent answers.
		return
	}
	if agent != nil && agent.RTTMs > 0 {
		obs.RTT = time.Duration(agent.RTTMs * float64(time.Millisecond))
	}
	var plugins []pluginData
	if agent != nil && agent.State == qga.StateOK {
		plugins = f.metrics(ctx, v, c)
	}
	f.apply(ctx, v.name, g, func() error {
		if v.current() != r {
			return nil
		}
		if err := f.eng.Observe(ctx, obs); err != nil {
			return err
		}
		for _, p := range plugins {
			if err := f.eng.Observe(ctx, monitor.Observation{Host: v.name, Source: SourceVM, Time: at, Interval: iv,
				Plugin: p.Plugin, Fields: p.Fields}); err != nil {
				return err
			}
		}
		return nil
	})
}

// metrics reads and maps a VM's metrics; nil when the guest cannot give
// them.
func (f *vmFeeder) metrics(ctx context.Context, v *vm, c *vmhost.Client) []pluginData {
	resp, err := c.Call(ctx, vmhost.Request{Method: vmhost.MethodMetrics})
	if err != nil {
		f.log.Debug("monitor: VM metrics", "vm", v.name, "err", err)
		return nil
	}
	var m qgaproto.Metrics
	if err := json.Unmarshal(resp.Metrics, &m); err != nil {
		f.log.Warn("monitor: VM metrics do not parse", "vm", v.name, "err", err)
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	mp := f.mappers[v.name]
	if mp == nil {
		mp = &metricsMapper{}
		f.mappers[v.name] = mp
	}
	return mp.next(&m)
}

// alertSummary is the VM listing's view of a host's active alerts.
func alertSummary(eng *monitor.Engine, name string) api.AlertSummary {
	var out api.AlertSummary
	worst := threshold.OK
	for _, a := range eng.Alerts(monitor.AlertFilter{Host: name}) {
		out.Active++
		if threshold.Severity(a.Level) > threshold.Severity(worst) {
			worst = a.Level
		}
	}
	if out.Active > 0 {
		out.Worst = worst.String()
	}
	return out
}

// vmAlerts is the alert summary of a VM (empty before the monitor runs).
func (d *Daemon) vmAlerts(name string) api.AlertSummary {
	d.mu.Lock()
	mon := d.mon
	d.mu.Unlock()
	if mon == nil {
		return api.AlertSummary{}
	}
	return alertSummary(mon.eng, name)
}

// hasAgent reports whether v's image declares a guest agent.
func hasAgent(v *vm) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.manifest != nil && (v.manifest.Agent == "mb-agent" || v.manifest.Agent == "qemu-ga")
}

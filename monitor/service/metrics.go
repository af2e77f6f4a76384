package service

import (
	"math"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mbvm/mb/monitor"
	"github.com/mbvm/mb/monitor/notify"
	"github.com/mbvm/mb/monitor/threshold"
)

// metrics is the Prometheus exposition of one service: a private registry
// (no global state) holding a collector that reads the engine at scrape
// time, plus the Go runtime and process collectors.
type metrics struct {
	reg *prometheus.Registry
}

// The metric descriptions. Every series of the monitor starts with
// mb_monitor_.
var (
	descHostUp = prometheus.NewDesc("mb_monitor_host_up",
		"1 when the host reported within its interval and grace, else 0.", []string{"host"}, nil)
	descHostReach = prometheus.NewDesc("mb_monitor_host_reachability",
		"1 for the host's reachability state (up, overdue, down, stopped, unknown), 0 for the others.", []string{"host", "state"}, nil)
	descHostOverdue = prometheus.NewDesc("mb_monitor_host_overdue",
		"1 when the host missed its interval and grace (overdue or down), else 0.", []string{"host"}, nil)
	descRTT = prometheus.NewDesc("mb_monitor_host_rtt_seconds",
		"The host's last measured round-trip time.", []string{"host"}, nil)
	descRTTSmoothed = prometheus.NewDesc("mb_monitor_host_rtt_smoothed_seconds",
		"The host's smoothed round-trip time.", []string{"host"}, nil)
	descLastSeen = prometheus.NewDesc("mb_monitor_host_last_seen_age_seconds",
		"Seconds since the host last reported.", []string{"host"}, nil)
	descField = prometheus.NewDesc("mb_monitor_field_value",
		"The latest value of a numeric plugin field (field is the dotted path inside the plugin's data).", []string{"host", "plugin", "field"}, nil)
	descAlert = prometheus.NewDesc("mb_monitor_alert_level",
		"An alert's level: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.", []string{"host", "plugin", "field"}, nil)
	descAlertAcked = prometheus.NewDesc("mb_monitor_alert_acknowledged",
		"1 when an active alert has an acknowledgement in force.", []string{"host", "plugin", "field"}, nil)
	descAlertSilenced = prometheus.NewDesc("mb_monitor_alert_silenced",
		"1 when a silence covers the alert now.", []string{"host", "plugin", "field"}, nil)
	descAlerts = prometheus.NewDesc("mb_monitor_alerts",
		"Alerts by level.", []string{"level"}, nil)
	descNotifications = prometheus.NewDesc("mb_monitor_notification_attempts_total",
		"Delivery attempts per channel and outcome (sent, retried, failed) since the monitor started.", []string{"channel", "outcome"}, nil)
	descHosts = prometheus.NewDesc("mb_monitor_hosts",
		"Hosts tracked.", nil, nil)
	descObservations = prometheus.NewDesc("mb_monitor_observations_total",
		"Observations (heartbeats and plugin reports) taken in.", nil, nil)
	descRefused = prometheus.NewDesc("mb_monitor_observations_refused_total",
		"Observations refused (max_hosts reached).", nil, nil)
	descSamples = prometheus.NewDesc("mb_monitor_samples_total",
		"Numeric field values taken in.", nil, nil)
	descTransitions = prometheus.NewDesc("mb_monitor_alert_transitions_total",
		"Alert level changes.", nil, nil)
	descDecided = prometheus.NewDesc("mb_monitor_notifications_total",
		"Notifications decided by the engine (each goes to one or more channels).", nil, nil)
	descStoreErrors = prometheus.NewDesc("mb_monitor_store_errors_total",
		"State changes whose saving to monitor.db failed.", nil, nil)
	descJournalErrors = prometheus.NewDesc("mb_monitor_journal_write_errors_total",
		"Journal lines that could not be written.", nil, nil)
)

func newMetrics(s *Service) *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collector{s},
		fleetCollector{s},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return &metrics{reg: reg}
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// collector reads the engine at scrape time.
type collector struct{ s *Service }

// Describe sends nothing: the collector is unchecked, its series depend on
// the hosts.
func (collector) Describe(chan<- *prometheus.Desc) {}

var reachStates = []monitor.Reachability{monitor.Up, monitor.Overdue, monitor.Down, monitor.Stopped, monitor.Unknown}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	now := s.clock()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	levels := map[threshold.Level]int{}
	for _, h := range s.engine.Hosts() {
		gauge(descHostUp, b2f(h.Reach == monitor.Up), h.Name)
		gauge(descHostOverdue, b2f(h.Reach == monitor.Overdue || h.Reach == monitor.Down), h.Name)
		for _, st := range reachStates {
			gauge(descHostReach, b2f(h.Reach == st), h.Name, string(st))
		}
		if h.RTT > 0 {
			gauge(descRTT, h.RTT.Seconds(), h.Name)
			gauge(descRTTSmoothed, h.RTTSmoothed.Seconds(), h.Name)
		}
		if !h.LastSeen.IsZero() {
			gauge(descLastSeen, math.Max(0, now.Sub(h.LastSeen).Seconds()), h.Name)
		}
		for plugin, data := range h.Plugins {
			threshold.Walk(data, func(path string, x any) {
				if v, ok := threshold.ToFloat(x); ok && !math.IsNaN(v) {
					gauge(descField, v, h.Name, plugin, path)
				}
			})
		}
		for _, a := range h.Alerts {
			levels[a.Level]++
			k := a.Key
			gauge(descAlert, float64(a.Level), k.Host, k.Plugin, k.Field)
			if a.Active() {
				gauge(descAlertAcked, b2f(a.Ack != nil && a.Ack.Active(now)), k.Host, k.Plugin, k.Field)
				gauge(descAlertSilenced, b2f(a.Silenced), k.Host, k.Plugin, k.Field)
			}
		}
	}
	for _, l := range []threshold.Level{threshold.OK, threshold.Warning, threshold.Critical, threshold.Unknown} {
		gauge(descAlerts, float64(levels[l]), l.String())
	}
	counts := s.disp.Counts()
	names := s.disp.ChannelNames()
	for n := range counts {
		if !contains(names, n) {
			names = append(names, n) // a channel removed by a reload
		}
	}
	for _, n := range names {
		cn := counts[n]
		counter(descNotifications, cn.Sent, n, string(notify.OutcomeSent))
		counter(descNotifications, cn.Retried, n, string(notify.OutcomeRetried))
		counter(descNotifications, cn.Failed, n, string(notify.OutcomeFailed))
	}
	st := s.engine.Stats()
	gauge(descHosts, float64(st.Hosts))
	counter(descObservations, st.Observations)
	counter(descRefused, st.Refused)
	counter(descSamples, st.Samples)
	counter(descTransitions, st.Transitions)
	counter(descDecided, st.Notifications)
	counter(descStoreErrors, st.StoreErrors)
	counter(descJournalErrors, s.journal.writeErrors.Load())
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

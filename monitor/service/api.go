package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mbvm/mb/monitor"
	"github.com/mbvm/mb/monitor/alert"
	"github.com/mbvm/mb/monitor/journal"
	"github.com/mbvm/mb/monitor/notify"
	"github.com/mbvm/mb/monitor/store"
	"github.com/mbvm/mb/monitor/threshold"
)

// MaxBody bounds a request body.
const MaxBody = 64 << 10

// routes builds the handler of /api/0/ and /metrics.
func (s *Service) routes() http.Handler {
	mux := http.NewServeMux()
	mh := s.metrics.handler()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		if requireAdmin(w, r, "/metrics") {
			mh.ServeHTTP(w, r)
		}
	})
	mux.HandleFunc("GET /api/0/hosts", s.getHosts)
	mux.HandleFunc("GET /api/0/alerts", s.getAlerts)
	mux.HandleFunc("GET /api/0/alert_summary", s.getAlertSummary)
	mux.HandleFunc("GET /api/0/messages", s.getMessages)
	mux.HandleFunc("GET /api/0/notifications", s.getNotifications)
	mux.HandleFunc("GET /api/0/hosts/{host}/plugins", s.getPlugins)
	mux.HandleFunc("GET /api/0/hosts/{host}/plugins/{plugin}", s.getPlugin)
	mux.HandleFunc("GET /api/0/hosts/{host}/alerts", s.getHostAlerts)
	mux.HandleFunc("GET /api/0/hosts/{host}/info", s.getHostInfo)
	mux.HandleFunc("GET /api/0/hosts/{host}/history", s.getHistory)
	mux.HandleFunc("POST /api/0/alerts/acknowledge", s.postAcknowledge)
	mux.HandleFunc("POST /api/0/alerts/unacknowledge", s.postUnacknowledge)
	mux.HandleFunc("GET /api/0/silences", s.getSilences)
	mux.HandleFunc("POST /api/0/silences", s.postSilence)
	mux.HandleFunc("DELETE /api/0/silences/{id}", s.deleteSilence)
	mux.HandleFunc("POST /api/0/reload", s.postReload)
	mux.HandleFunc("POST /api/0/notify/test", s.postNotifyTest)
	mux.HandleFunc("POST /api/0/hosts/{host}/command", s.postCommand)
	mux.HandleFunc("POST /api/0/hosts/{host}/update", s.postUpdate)
	mux.HandleFunc("GET /api/0/fleet", s.getFleet)
	mux.HandleFunc("/api/0/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no such endpoint: %s %s (see the Monitor API section of the README)", r.Method, r.URL.Path))
	})
	return mux
}

// ---- response bodies (a stable interface: add fields, never rename) ----

// HostJSON is a host in /api/0/hosts and /api/0/hosts/{host}/info.
type HostJSON struct {
	Name               string    `json:"name"`
	Source             string    `json:"source"`
	Sources            []string  `json:"sources"`
	Reachability       string    `json:"reachability"`
	ReachabilitySince  time.Time `json:"reachability_since,omitzero"`
	ReachabilityReason string    `json:"reachability_reason,omitempty"`
	Address            string    `json:"address,omitempty"`
	FirstSeen          time.Time `json:"first_seen,omitzero"`
	LastSeen           time.Time `json:"last_seen,omitzero"`
	// LastSeenAge is seconds since LastSeen (absent when never seen).
	LastSeenAge     *float64    `json:"last_seen_age_seconds,omitempty"`
	IntervalSeconds float64     `json:"interval_seconds"`
	GraceSeconds    float64     `json:"grace_seconds"`
	RTTMillis       *float64    `json:"rtt_ms,omitempty"`
	RTTSmoothed     *float64    `json:"rtt_smoothed_ms,omitempty"`
	Owner           string      `json:"owner,omitempty"`
	Managers        []string    `json:"managers"`
	Monitors        []string    `json:"monitors"`
	Watch           bool        `json:"watch"`
	Plugins         []string    `json:"plugins"`
	Alerts          AlertCounts `json:"alerts"`
	Worst           string      `json:"worst"`
}

// AlertCounts counts alerts by level.
type AlertCounts struct {
	OK       int `json:"ok"`
	Warning  int `json:"warning"`
	Critical int `json:"critical"`
	Unknown  int `json:"unknown"`
}

// AlertJSON is one alert.
type AlertJSON struct {
	Host       string    `json:"host"`
	Plugin     string    `json:"plugin"`
	Field      string    `json:"field"`
	Name       string    `json:"name"` // plugin.field as `mb monitor ack` takes it
	Level      string    `json:"level"`
	Since      time.Time `json:"since,omitzero"`
	Updated    time.Time `json:"updated,omitzero"`
	Value      *float64  `json:"value"`
	Text       string    `json:"text"`
	Notified   string    `json:"notified"`
	NotifiedAt time.Time `json:"notified_at,omitzero"`
	Streak     int       `json:"streak"`
	Flapping   bool      `json:"flapping"`
	Stale      bool      `json:"stale"`
	Silenced   bool      `json:"silenced"`
	Held       bool      `json:"held"`
	Ack        *AckJSON  `json:"acknowledged"`
}

// AckJSON is an acknowledgement.
type AckJSON struct {
	By      string    `json:"by"`
	Comment string    `json:"comment"`
	At      time.Time `json:"at"`
	Until   time.Time `json:"until,omitzero"`
	Active  bool      `json:"active"`
}

// SilenceJSON is a silence.
type SilenceJSON struct {
	ID      string    `json:"id"`
	Host    string    `json:"host"`
	Plugin  string    `json:"plugin"`
	Field   string    `json:"field"`
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	By      string    `json:"by"`
	Comment string    `json:"comment"`
	Created time.Time `json:"created,omitzero"`
	Active  bool      `json:"active"`
}

// RuleJSON is an effective threshold rule.
type RuleJSON struct {
	Warning    *float64 `json:"warning,omitempty"`
	Critical   *float64 `json:"critical,omitempty"`
	Operator   string   `json:"operator"`
	Hysteresis float64  `json:"hysteresis"`
	Count      int      `json:"count"`
	Display    string   `json:"display,omitempty"`
}

// SampleJSON is one sample.
type SampleJSON struct {
	Time  time.Time `json:"time"`
	Value float64   `json:"value"`
}

// RollupJSON is a rollup bucket.
type RollupJSON struct {
	Start             time.Time `json:"start"`
	ResolutionSeconds int       `json:"resolution_seconds"`
	Min               float64   `json:"min"`
	Max               float64   `json:"max"`
	Mean              float64   `json:"mean"`
	Count             int64     `json:"count"`
	Last              float64   `json:"last"`
}

// NotificationJSON is one outbox item.
type NotificationJSON struct {
	ID          string    `json:"id"`
	Channel     string    `json:"channel"`
	Host        string    `json:"host"`
	Plugin      string    `json:"plugin"`
	Field       string    `json:"field"`
	Level       string    `json:"level"`
	Recovery    bool      `json:"recovery"`
	Text        string    `json:"text"`
	Status      string    `json:"status"`
	Attempts    int       `json:"attempts"`
	Created     time.Time `json:"created"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	Done        time.Time `json:"done,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
}

// ---- handlers ----

func (s *Service) getHosts(w http.ResponseWriter, r *http.Request) {
	if !queryOnly(w, r) {
		return
	}
	now := s.clock()
	out := []HostJSON{}
	for _, h := range s.engine.Hosts() {
		if s.visible(r.Context(), h) {
			out = append(out, hostJSON(h, now))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"hosts": out})
}

func (s *Service) getAlerts(w http.ResponseWriter, r *http.Request) {
	if !queryOnly(w, r, "all", "host", "min_level") {
		return
	}
	f := monitor.AlertFilter{Host: r.URL.Query().Get("host")}
	var err error
	if f.All, err = boolParam(r, "all"); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if v := r.URL.Query().Get("min_level"); v != "" {
		if f.MinLevel, err = threshold.ParseLevel(v); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("min_level: %w (accepted: OK, WARNING, CRITICAL, UNKNOWN)", err))
			return
		}
	}
	if f.Host != "" {
		if h, ok := s.engine.Host(f.Host); !ok || !s.visible(r.Context(), h) {
			writeError(w, http.StatusNotFound, noHost(f.Host))
			return
		}
	}
	see := s.visibleHosts(r.Context())
	as := slices.DeleteFunc(s.engine.Alerts(f), func(a monitor.AlertInfo) bool { return !see(a.Key.Host) })
	writeJSON(w, http.StatusOK, map[string]any{"alerts": alertsJSON(as, s.clock())})
}

func (s *Service) getAlertSummary(w http.ResponseWriter, r *http.Request) {
	if !queryOnly(w, r) {
		return
	}
	type summary struct {
		AlertCounts
		Acknowledged int            `json:"acknowledged"`
		Silenced     int            `json:"silenced"`
		Held         int            `json:"held"`
		Hosts        map[string]int `json:"hosts"`
	}
	now := s.clock()
	var sum summary
	see := s.visibleHosts(r.Context())
	for _, a := range s.engine.Alerts(monitor.AlertFilter{All: true}) {
		if !see(a.Key.Host) {
			continue
		}
		count(&sum.AlertCounts, a.Level)
		if a.Active() && a.Ack != nil && a.Ack.Active(now) {
			sum.Acknowledged++
		}
		if a.Active() && a.Silenced {
			sum.Silenced++
		}
		if a.Active() && a.Held {
			sum.Held++
		}
	}
	sum.Hosts = map[string]int{}
	for _, r := range []monitor.Reachability{monitor.Up, monitor.Overdue, monitor.Down, monitor.Stopped, monitor.Unknown} {
		sum.Hosts[string(r)] = 0
	}
	for _, h := range s.engine.Hosts() {
		if s.visible(r.Context(), h) {
			sum.Hosts[string(h.Reach)]++
		}
	}
	writeJSON(w, http.StatusOK, sum)
}

func (s *Service) getMessages(w http.ResponseWriter, r *http.Request) {
	if !queryOnly(w, r) {
		return
	}
	msgs := s.journal.recent()
	if restricted(r.Context()) {
		see := s.visibleHosts(r.Context())
		msgs = slices.DeleteFunc(msgs, func(e journal.Entry) bool { return !see(messageHost(e.Message)) })
	}
	if msgs == nil {
		msgs = []journal.Entry{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": msgs})
}

func (s *Service) getNotifications(w http.ResponseWriter, r *http.Request) {
	if !queryOnly(w, r, "status", "limit") {
		return
	}
	status := r.URL.Query().Get("status")
	if status != "" && status != store.StatusPending && status != store.StatusSent && status != store.StatusFailed {
		writeError(w, http.StatusBadRequest, fmt.Errorf("status %q: accepted: pending, sent, failed", status))
		return
	}
	limit, err := intParam(r, "limit", 100, 1, 1000)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	items, err := s.store.Outbox(r.Context(), status, limit)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	see := s.visibleHosts(r.Context())
	items = slices.DeleteFunc(items, func(it store.OutboxItem) bool { return !see(it.Notification.Host) })
	out := make([]NotificationJSON, len(items))
	for i, it := range items {
		n := it.Notification
		out[i] = NotificationJSON{
			ID: n.ID, Channel: it.Channel, Host: n.Host, Plugin: n.Plugin, Field: n.Field,
			Level: n.Level, Recovery: n.Recovery, Text: n.Text, Status: it.Status, Attempts: it.Attempts,
			Created: it.Created, Done: it.Done, LastError: it.LastError,
		}
		if it.Status == store.StatusPending {
			out[i].NextAttempt = it.NextAttempt
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"notifications": out})
}

func (s *Service) host(w http.ResponseWriter, r *http.Request) (monitor.HostInfo, bool) {
	name := r.PathValue("host")
	h, ok := s.engine.Host(name)
	if !ok || !s.visible(r.Context(), h) {
		writeError(w, http.StatusNotFound, noHost(name))
		return monitor.HostInfo{}, false
	}
	return h, true
}

func (s *Service) getPlugins(w http.ResponseWriter, r *http.Request) {
	if !queryOnly(w, r) {
		return
	}
	h, ok := s.host(w, r)
	if !ok {
		return
	}
	type plugin struct {
		Time time.Time      `json:"time"`
		Data map[string]any `json:"data"`
	}
	out := map[string]plugin{}
	for name, data := range h.Plugins {
		out[name] = plugin{Time: h.PluginTimes[name], Data: data}
	}
	writeJSON(w, http.StatusOK, map[string]any{"host": h.Name, "plugins": out})
}

func (s *Service) getPlugin(w http.ResponseWriter, r *http.Request) {
	if !queryOnly(w, r, "limit") {
		return
	}
	h, ok := s.host(w, r)
	if !ok {
		return
	}
	name := r.PathValue("plugin")
	data, ok := h.Plugins[name]
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("host %q has no data from plugin %q; it has: %s", h.Name, name, orNone(sortedKeys(h.Plugins))))
		return
	}
	limit, err := intParam(r, "limit", 0, 1, 100000)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	samples := map[string][]SampleJSON{}
	for _, f := range s.engine.Fields(h.Name) {
		path, ok := strings.CutPrefix(f, name+".")
		if !ok {
			continue
		}
		hist, _ := s.engine.History(h.Name, f, time.Time{})
		if limit > 0 && len(hist) > limit {
			hist = hist[len(hist)-limit:]
		}
		samples[path] = samplesJSON(hist)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"host": h.Name, "plugin": name, "time": h.PluginTimes[name], "data": data, "samples": samples,
	})
}

func (s *Service) getHostAlerts(w http.ResponseWriter, r *http.Request) {
	if !queryOnly(w, r) {
		return
	}
	h, ok := s.host(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"host": h.Name, "alerts": alertsJSON(h.Alerts, s.clock())})
}

func (s *Service) getHostInfo(w http.ResponseWriter, r *http.Request) {
	if !queryOnly(w, r) {
		return
	}
	h, ok := s.host(w, r)
	if !ok {
		return
	}
	cfg := s.cur.Load().cfg
	layers := []threshold.Spec{cfg.Thresholds}
	for _, p := range h.ThresholdConfig {
		layers = append(layers, cfg.ThresholdConfigs[p])
	}
	rules := map[string]map[string]RuleJSON{}
	if set, err := threshold.Compile(layers...); err == nil {
		for _, p := range set.Plugins() {
			if p == threshold.RTTPlugin {
				continue
			}
			m := map[string]RuleJSON{}
			for f, rule := range set.Rules(p) {
				m[f] = ruleJSON(rule)
			}
			rules[p] = m
		}
		if rule, ok := set.RTT(h.Name); ok {
			rules[threshold.RTTPlugin] = map[string]RuleJSON{"": ruleJSON(*rule)}
		}
	}
	type address struct {
		Address string    `json:"address"`
		Since   time.Time `json:"since"`
	}
	addrs := make([]address, len(h.Addresses))
	for i, a := range h.Addresses {
		addrs[i] = address{a.Address, a.Since}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"host":             hostJSON(h, s.clock()),
		"addresses":        addrs,
		"threshold_config": nonNil(h.ThresholdConfig),
		"thresholds":       rules,
		"os_info":          h.Plugins["os_info"],
		"fields":           nonNil(s.engine.Fields(h.Name)),
	})
}

func (s *Service) getHistory(w http.ResponseWriter, r *http.Request) {
	if !queryOnly(w, r, "field", "since") {
		return
	}
	h, ok := s.host(w, r)
	if !ok {
		return
	}
	field := r.URL.Query().Get("field")
	if field == "" {
		writeError(w, http.StatusBadRequest, fmt.Errorf("give field=PLUGIN.FIELD (fields of %s: %s)", h.Name, orNone(s.engine.Fields(h.Name))))
		return
	}
	since := time.Hour
	if v := r.URL.Query().Get("since"); v != "" {
		d, err := parseDuration(v)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("since %q: give a positive duration such as 1h or 90m, or seconds", v))
			return
		}
		since = d
	}
	now := s.clock()
	from := now.Add(-since)
	hist, ok := s.engine.History(h.Name, field, from)
	res := store.Minute
	if since > 6*time.Hour {
		res = store.Hour
	}
	rollups, err := s.store.Rollups(r.Context(), h.Name, field, res, from.Truncate(res))
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	if !ok && len(rollups) == 0 {
		writeError(w, http.StatusNotFound, fmt.Errorf("host %q has no field %q; its fields: %s", h.Name, field, orNone(s.engine.Fields(h.Name))))
		return
	}
	rj := make([]RollupJSON, len(rollups))
	for i, ru := range rollups {
		rj[i] = RollupJSON{Start: ru.Start, ResolutionSeconds: int(ru.Resolution / time.Second), Min: ru.Min, Max: ru.Max, Mean: ru.Mean, Count: ru.Count, Last: ru.Last}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"host": h.Name, "field": field, "since": from, "samples": samplesJSON(hist), "rollups": rj,
	})
}

// AckRequest is the body of POST /api/0/alerts/acknowledge (and, with only
// host and field, of unacknowledge).
type AckRequest struct {
	Host string `json:"host"`
	// Field is PLUGIN.FIELD (cpu_monitor.cpu_percent), or reachability
	// or rtt for a host's own alerts.
	Field string `json:"field"`
	// Expiry (a time) or For (a duration: 4h, or seconds) ends the
	// acknowledgement early; without them it lasts until recovery.
	Expiry  time.Time `json:"expiry,omitzero"`
	For     string    `json:"for,omitempty"`
	Comment string    `json:"comment,omitempty"`
}

// alertKey finds the alert a request names, and checks that the caller may
// change it (owner or manager of its host).
func (s *Service) alertKey(w http.ResponseWriter, r *http.Request, host, field, what string) (alert.Key, bool) {
	if host == "" || field == "" {
		writeError(w, http.StatusBadRequest, errors.New(`give "host" and "field" (PLUGIN.FIELD such as cpu_monitor.cpu_percent, or reachability, or rtt)`))
		return alert.Key{}, false
	}
	h, ok := s.engine.Host(host)
	if !ok || !s.visible(r.Context(), h) {
		writeError(w, http.StatusNotFound, noHost(host))
		return alert.Key{}, false
	}
	if s.roleOn(r.Context(), h) < roleManager {
		writeError(w, http.StatusForbidden, errForbidden(s.userOf(r.Context()), what, host))
		return alert.Key{}, false
	}
	k := splitField(host, field)
	for _, a := range h.Alerts {
		if a.Key == k {
			return k, true
		}
	}
	names := make([]string, 0, len(h.Alerts))
	for _, a := range h.Alerts {
		names = append(names, alertName(a.Key))
	}
	writeError(w, http.StatusNotFound, fmt.Errorf("host %q has no alert %q; its alerts: %s", host, field, orNone(names)))
	return alert.Key{}, false
}

func (s *Service) postAcknowledge(w http.ResponseWriter, r *http.Request) {
	var req AckRequest
	if !decodeBody(w, r, &req) {
		return
	}
	k, ok := s.alertKey(w, r, req.Host, req.Field, "acknowledging")
	if !ok {
		return
	}
	until := req.Expiry
	if req.For != "" {
		if !until.IsZero() {
			writeError(w, http.StatusBadRequest, errors.New(`give "expiry" or "for", not both`))
			return
		}
		d, err := parseDuration(req.For)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf(`"for": %q is not a positive duration (such as 4h, 30m, or seconds)`, req.For))
			return
		}
		until = s.clock().Add(d)
	}
	if !until.IsZero() && !until.After(s.clock()) {
		writeError(w, http.StatusBadRequest, fmt.Errorf(`"expiry" %s is in the past`, until.Format(time.RFC3339)))
		return
	}
	err := s.engine.Acknowledge(r.Context(), k, s.userOf(r.Context()), req.Comment, until)
	switch {
	case errors.Is(err, alert.ErrNotActive):
		writeError(w, http.StatusConflict, fmt.Errorf("%s: %w", k, err))
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	s.writeAlert(w, k)
}

func (s *Service) postUnacknowledge(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Host  string `json:"host"`
		Field string `json:"field"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	k, ok := s.alertKey(w, r, req.Host, req.Field, "removing an acknowledgement")
	if !ok {
		return
	}
	if err := s.engine.Unacknowledge(r.Context(), k, s.userOf(r.Context())); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	s.writeAlert(w, k)
}

func (s *Service) writeAlert(w http.ResponseWriter, k alert.Key) {
	for _, a := range s.engine.Alerts(monitor.AlertFilter{Host: k.Host, All: true}) {
		if a.Key == k {
			writeJSON(w, http.StatusOK, map[string]any{"alert": alertJSON(a, s.clock())})
			return
		}
	}
	writeError(w, http.StatusNotFound, fmt.Errorf("alert %s is gone", k))
}

func (s *Service) getSilences(w http.ResponseWriter, r *http.Request) {
	if !queryOnly(w, r) {
		return
	}
	now := s.clock()
	out := []SilenceJSON{}
	var hosts []monitor.HostInfo
	if restricted(r.Context()) {
		hosts = s.engine.Hosts()
	}
	for _, x := range s.engine.Silences() {
		if restricted(r.Context()) && !s.silenceVisible(r.Context(), x, hosts) {
			continue
		}
		out = append(out, silenceJSON(x, now))
	}
	writeJSON(w, http.StatusOK, map[string]any{"silences": out})
}

// SilenceRequest is the body of POST /api/0/silences.
type SilenceRequest struct {
	// Host, Plugin and Field are patterns ("*" any run of characters,
	// "?" one; empty matches anything). At least one must be given.
	Host   string `json:"host"`
	Plugin string `json:"plugin,omitempty"`
	Field  string `json:"field,omitempty"`
	// Start (default now) and End, or For (a duration from Start).
	Start   time.Time `json:"start,omitzero"`
	End     time.Time `json:"end,omitzero"`
	For     string    `json:"for,omitempty"`
	Comment string    `json:"comment,omitempty"`
}

func (s *Service) postSilence(w http.ResponseWriter, r *http.Request) {
	var req SilenceRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if restricted(r.Context()) {
		// A user who is not an admin silences one of their own hosts,
		// named exactly.
		h, ok := s.engine.Host(req.Host)
		if strings.ContainsAny(req.Host, "*?") || !ok || !s.visible(r.Context(), h) {
			writeError(w, http.StatusForbidden, fmt.Errorf("silencing %q needs an admin user; %s may silence only a host they own or manage, named without patterns", req.Host, s.userOf(r.Context())))
			return
		}
		if s.roleOn(r.Context(), h) < roleManager {
			writeError(w, http.StatusForbidden, errForbidden(s.userOf(r.Context()), "silencing", req.Host))
			return
		}
	}
	start := req.Start
	if start.IsZero() {
		start = s.clock()
	}
	end := req.End
	if req.For != "" {
		if !end.IsZero() {
			writeError(w, http.StatusBadRequest, errors.New(`give "end" or "for", not both`))
			return
		}
		d, err := parseDuration(req.For)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf(`"for": %q is not a positive duration (such as 2h, 30m, or seconds)`, req.For))
			return
		}
		end = start.Add(d)
	}
	x := alert.Silence{
		ID: "-", Host: req.Host, Plugin: req.Plugin, Field: req.Field, Start: start, End: end,
		By: s.userOf(r.Context()), Comment: req.Comment,
	}
	if err := x.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if !end.After(s.clock()) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("silence: end %s is in the past", end.Format(time.RFC3339)))
		return
	}
	x.ID = ""
	got, err := s.engine.AddSilence(r.Context(), x)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"silence": silenceJSON(got, s.clock())})
}

func (s *Service) deleteSilence(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if restricted(r.Context()) {
		i := slices.IndexFunc(s.engine.Silences(), func(x alert.Silence) bool { return x.ID == id })
		if i < 0 || s.engine.Silences()[i].By != s.userOf(r.Context()) {
			writeError(w, http.StatusForbidden, fmt.Errorf("ending silence %q needs an admin user, or the user who made it", id))
			return
		}
	}
	err := s.engine.DeleteSilence(r.Context(), id)
	switch {
	case errors.Is(err, monitor.ErrNoSilence):
		ids := []string{}
		for _, x := range s.engine.Silences() {
			ids = append(ids, x.ID)
		}
		writeError(w, http.StatusNotFound, fmt.Errorf("no silence %q; silences: %s", id, orNone(ids)))
	case err != nil:
		writeError(w, http.StatusInternalServerError, err)
	default:
		writeJSON(w, http.StatusOK, map[string]any{"deleted": id})
	}
}

func (s *Service) postReload(w http.ResponseWriter, r *http.Request) {
	var req struct{}
	if !decodeBody(w, r, &req) || !requireAdmin(w, r, "reloading the configuration") {
		return
	}
	if err := s.Reload(""); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"reloaded": true, "path": s.Config().Path})
}

// NotifyTestRequest is the body of POST /api/0/notify/test.
type NotifyTestRequest struct {
	// Channel names one channel; empty tests every channel.
	Channel string `json:"channel,omitempty"`
}

func (s *Service) postNotifyTest(w http.ResponseWriter, r *http.Request) {
	var req NotifyTestRequest
	if !decodeBody(w, r, &req) || !requireAdmin(w, r, "testing notification channels") {
		return
	}
	results, err := notify.Test(r.Context(), s.cur.Load().channels, req.Channel)
	if err != nil {
		writeError(w, http.StatusNotFound, err)
		return
	}
	if results == nil {
		results = []notify.TestResult{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": results})
}

// ---- conversions ----

func hostJSON(h monitor.HostInfo, now time.Time) HostJSON {
	out := HostJSON{
		Name: h.Name, Source: h.Source, Sources: nonNil(h.Sources),
		Reachability: string(h.Reach), ReachabilitySince: h.ReachSince, ReachabilityReason: h.ReachReason,
		FirstSeen: h.FirstSeen, LastSeen: h.LastSeen,
		IntervalSeconds: h.Interval.Seconds(), GraceSeconds: h.Grace.Seconds(),
		Owner: h.Owner, Managers: nonNil(h.Managers), Monitors: nonNil(h.Monitors), Watch: h.Watch,
		Plugins: nonNil(sortedKeys(h.Plugins)), Worst: "OK",
	}
	if n := len(h.Addresses); n > 0 {
		out.Address = h.Addresses[n-1].Address
	}
	if !h.LastSeen.IsZero() {
		age := math.Max(0, now.Sub(h.LastSeen).Seconds())
		out.LastSeenAge = &age
	}
	if h.RTT > 0 {
		ms := float64(h.RTT) / float64(time.Millisecond)
		sm := float64(h.RTTSmoothed) / float64(time.Millisecond)
		out.RTTMillis, out.RTTSmoothed = &ms, &sm
	}
	worst := threshold.OK
	for _, a := range h.Alerts {
		count(&out.Alerts, a.Level)
		if threshold.Severity(a.Level) > threshold.Severity(worst) {
			worst = a.Level
		}
	}
	out.Worst = worst.String()
	return out
}

func count(c *AlertCounts, l threshold.Level) {
	switch l {
	case threshold.OK:
		c.OK++
	case threshold.Warning:
		c.Warning++
	case threshold.Critical:
		c.Critical++
	default:
		c.Unknown++
	}
}

func alertsJSON(as []monitor.AlertInfo, now time.Time) []AlertJSON {
	out := make([]AlertJSON, len(as))
	for i, a := range as {
		out[i] = alertJSON(a, now)
	}
	return out
}

func alertJSON(a monitor.AlertInfo, now time.Time) AlertJSON {
	out := AlertJSON{
		Host: a.Key.Host, Plugin: a.Key.Plugin, Field: a.Key.Field, Name: alertName(a.Key),
		Level: a.Level.String(), Since: a.Since, Updated: a.Updated, Text: a.Text,
		Notified: a.Notified.String(), NotifiedAt: a.NotifiedAt, Streak: a.Streak,
		Flapping: a.Flapping, Stale: a.Stale, Silenced: a.Silenced, Held: a.Held,
	}
	if !math.IsNaN(a.Value) && !math.IsInf(a.Value, 0) {
		v := a.Value
		out.Value = &v
	}
	if a.Ack != nil {
		out.Ack = &AckJSON{By: a.Ack.By, Comment: a.Ack.Comment, At: a.Ack.At, Until: a.Ack.Until, Active: a.Ack.Active(now)}
	}
	return out
}

func silenceJSON(x alert.Silence, now time.Time) SilenceJSON {
	return SilenceJSON{ID: x.ID, Host: x.Host, Plugin: x.Plugin, Field: x.Field, Start: x.Start, End: x.End,
		By: x.By, Comment: x.Comment, Created: x.Created, Active: x.Active(now)}
}

func ruleJSON(r threshold.Rule) RuleJSON {
	out := RuleJSON{Operator: r.Op.String(), Hysteresis: r.Hysteresis, Count: max(r.Count, 1), Display: r.Display}
	if r.HasWarning && r.Op != threshold.OpNagios {
		v := r.Warning
		out.Warning = &v
	}
	if r.HasCritical && r.Op != threshold.OpNagios {
		v := r.Critical
		out.Critical = &v
	}
	return out
}

func samplesJSON(in []monitor.Sample) []SampleJSON {
	out := make([]SampleJSON, len(in))
	for i, x := range in {
		out[i] = SampleJSON{Time: x.Time, Value: x.Value}
	}
	return out
}

// alertName is the name of an alert as the API and CLI take it:
// plugin.field, or the plugin alone for host-level alerts.
func alertName(k alert.Key) string {
	if k.Field == "" {
		return k.Plugin
	}
	return k.Plugin + "." + k.Field
}

// splitField turns PLUGIN.FIELD (or a bare plugin such as reachability)
// into an alert key. Plugin names have no dots; fields may.
func splitField(host, name string) alert.Key {
	plugin, field, _ := strings.Cut(name, ".")
	return alert.Key{Host: host, Plugin: plugin, Field: field}
}

// ---- request helpers ----

// decodeBody reads a JSON body into v, refusing unknown fields, trailing
// data and bodies over MaxBody. An empty body is an empty object.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if !queryOnly(w, r) {
		return false
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("request body: %w (at most %d bytes)", err, MaxBody))
		return false
	}
	if len(bytes.TrimSpace(data)) == 0 {
		data = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("request body: %v; accepted fields: %s", err, strings.Join(jsonFields(v), ", ")))
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, errors.New("request body: more than one JSON value"))
		return false
	}
	return true
}

// jsonFields lists the JSON names of a struct's fields, for messages.
func jsonFields(v any) []string {
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var names []string
	if t.Kind() == reflect.Struct {
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
			if name != "" && name != "-" {
				names = append(names, name)
			}
		}
	}
	if len(names) == 0 {
		return []string{"none"}
	}
	return names
}

// queryOnly refuses query parameters other than the accepted ones.
func queryOnly(w http.ResponseWriter, r *http.Request, accepted ...string) bool {
	for k := range r.URL.Query() {
		if !slices.Contains(accepted, k) {
			acc := "none"
			if len(accepted) > 0 {
				acc = strings.Join(accepted, ", ")
			}
			writeError(w, http.StatusBadRequest, fmt.Errorf("unknown query parameter %q (accepted: %s)", k, acc))
			return false
		}
	}
	return true
}

func boolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s=%q is not true or false", name, v)
	}
	return b, nil
}

func intParam(r *http.Request, name string, def, lo, hi int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s=%q is not a number from %d to %d", name, v, lo, hi)
	}
	return n, nil
}

// parseDuration reads a Go duration (4h, 90m) or plain seconds.
func parseDuration(s string) (time.Duration, error) {
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(n * float64(time.Second)), nil
	}
	return time.ParseDuration(s)
}

// writeJSON writes v as the JSON reply.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// apiError is the body of every error reply.
type apiError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, apiError{Error: err.Error()})
}

func noHost(name string) error { return fmt.Errorf("no such host %q", name) }

func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// visibleHosts returns a test of whether the caller may see a host by
// name (always true for a trusted caller or an admin).
func (s *Service) visibleHosts(ctx context.Context) func(string) bool {
	if !restricted(ctx) {
		return func(string) bool { return true }
	}
	seen := map[string]bool{}
	for _, h := range s.engine.Hosts() {
		if s.visible(ctx, h) {
			seen[h.Name] = true
		}
	}
	return func(name string) bool { return seen[name] }
}

// silenceVisible reports whether a silence's host pattern matches a host
// the caller may see.
func (s *Service) silenceVisible(ctx context.Context, x alert.Silence, hosts []monitor.HostInfo) bool {
	for _, h := range hosts {
		if s.visible(ctx, h) && alert.Glob(x.Host, h.Name) {
			return true
		}
	}
	return false
}

// messageHost is the host a journal message is about ("" for none).
func messageHost(m any) string {
	mm, ok := m.(map[string]any)
	if !ok {
		return ""
	}
	if name, ok := mm["name"].(string); ok {
		return name
	}
	switch n := mm["notification"].(type) {
	case monitor.Notification:
		return n.Host
	case map[string]any:
		h, _ := n["Host"].(string)
		return h
	}
	return ""
}

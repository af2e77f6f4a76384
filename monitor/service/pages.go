package service

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mbvm/mb/monitor"
	"github.com/mbvm/mb/monitor/alert"
	"github.com/mbvm/mb/monitor/journal"
	"github.com/mbvm/mb/monitor/store"
	"github.com/mbvm/mb/monitor/threshold"
	"github.com/mbvm/mb/monitor/web"
)

// page fills what every page shows about the signed-in user.
func (s *Service) page(r *http.Request, title, nav string, body any) web.Page {
	p := web.Page{Title: title, Nav: nav, Body: body}
	if id, ok := identOf(r.Context()); ok {
		p.User, p.Admin, p.CSRF = id.user, id.admin, id.sess.CSRF
	} else if len(s.cur.Load().hashes) == 0 {
		p.Admin = true // the open dashboard on loopback
	}
	if d := r.URL.Query().Get("done"); d != "" {
		p.Flash = doneMessages[d]
	}
	return p
}

// doneMessages are the results a redirect after a form names.
var doneMessages = map[string]string{
	"started": "The VM was started.", "stopped": "The VM was stopped.", "restarted": "The VM was restarted.",
	"ack": "The alert is acknowledged.", "unack": "The acknowledgement was removed.",
	"silence": "The alert is silenced.", "unsilence": "The silence has ended.",
}

func (s *Service) errorPage(w http.ResponseWriter, r *http.Request, status int, err error) {
	p := s.page(r, http.StatusText(status), "", web.ErrorBody{Status: status, Message: err.Error()})
	p.Flash = ""
	s.site.pages.Render(w, status, "error", p)
}

// safeNext is a local path to go to after signing in ("/live" for
// anything else, so the page cannot send a user to another site).
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") || strings.HasPrefix(next, "/login") {
		return "/live"
	}
	return next
}

func (s *Service) pageLogin(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if len(s.cur.Load().hashes) == 0 {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	if _, ok := identOf(r.Context()); ok {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	s.site.pages.Render(w, http.StatusOK, "login", web.Page{Title: "Sign in", Nav: "login", Body: web.LoginBody{Next: next}})
}

func (s *Service) formLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
	user, pass := r.PostFormValue("username"), r.PostFormValue("password")
	next := safeNext(r.PostFormValue("next"))
	tok, sess, err := s.login(r, user, pass)
	if err != nil {
		status := http.StatusUnauthorized
		var rl errRateLimited
		if errors.As(err, &rl) {
			status = http.StatusTooManyRequests
			w.Header().Set("Retry-After", fmt.Sprint(int(rl.wait.Seconds())+1))
		}
		s.site.pages.Render(w, status, "login", web.Page{Title: "Sign in", Nav: "login", Body: web.LoginBody{Next: next, Username: user, Error: err.Error()}})
		return
	}
	setSessionCookie(w, r, tok, sess.Expires)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Service) formLogout(w http.ResponseWriter, r *http.Request) {
	if id, ok := identOf(r.Context()); ok && id.token != "" {
		s.site.sessions.End(id.token)
	}
	setSessionCookie(w, r, "", time.Time{})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// liveHost is a host's row on /live.
func liveHost(h monitor.HostInfo) (lh web.LiveHost) {
	lh = web.LiveHost{
		Name: h.Name, Source: h.Source, Reach: string(h.Reach), ReachReason: h.ReachReason,
		LastSeen: h.LastSeen, RTT: h.RTT,
	}
	worst := threshold.OK
	defer func() { lh.Worst = worst.String() }()
	if n := len(h.Addresses); n > 0 {
		lh.Address = h.Addresses[n-1].Address
	}
	for _, a := range h.Alerts {
		if a.Level == threshold.OK {
			continue
		}
		lh.Alerts++
		if levelRank(a.Level) > levelRank(worst) {
			worst = a.Level
		}
	}
	return lh
}

// levelRank orders levels by how bad they are.
func levelRank(l threshold.Level) int {
	switch l {
	case threshold.Critical:
		return 3
	case threshold.Unknown:
		return 2
	case threshold.Warning:
		return 1
	}
	return 0
}

func (s *Service) pageLive(w http.ResponseWriter, r *http.Request) {
	var body web.LiveBody
	visible := map[string]bool{}
	for _, h := range s.engine.Hosts() {
		if s.visible(r.Context(), h) {
			body.Hosts = append(body.Hosts, liveHost(h))
			visible[h.Name] = true
		}
	}
	recent := s.journal.recent()
	for i := len(recent) - 1; i >= 0; i-- {
		m := summarize(recent[i])
		if (m.Host == "" && !restricted(r.Context())) || visible[m.Host] {
			body.Messages = append(body.Messages, m)
		}
	}
	s.site.pages.Render(w, http.StatusOK, "live", s.page(r, "Live", "live", body))
}

// summarize turns a journal entry into a line of the message stream.
func summarize(e journal.Entry) web.Message {
	sec := int64(e.Timestamp)
	m := web.Message{Time: time.Unix(sec, int64((e.Timestamp-float64(sec))*1e9)), Host: messageHost(e.Message)}
	mm, ok := e.Message.(map[string]any)
	if !ok {
		b, _ := json.Marshal(e.Message)
		m.Kind, m.Text = "MSG", clip(string(b))
		return m
	}
	m.Kind, _ = mm["ID"].(string)
	str := func(k string) string { v, _ := mm[k].(string); return v }
	field := func() string {
		if f := str("field"); f != "" {
			return str("plugin") + "." + f
		}
		return str("plugin")
	}
	switch m.Kind {
	case "HTB":
		m.Text = "heartbeat from " + str("source")
		if rtt, ok := mm["rtt_ms"].(float64); ok {
			m.Text += fmt.Sprintf(", rtt %.1f ms", rtt)
		}
	case "PLG":
		m.Text = "plugin " + str("plugin")
	case "REACH":
		m.Text = str("previous") + " → " + str("reach")
		if why := str("reason"); why != "" {
			m.Text += ": " + why
		}
	case "ALERT":
		m.Text = fmt.Sprintf("%s %v", field(), mm["level"])
		if t := str("text"); t != "" {
			m.Text += ": " + t
		}
	case "ACK":
		m.Text = fmt.Sprintf("%s acknowledged by %s", field(), str("by"))
	case "UNACK":
		m.Text = fmt.Sprintf("%s acknowledgement removed by %s", field(), str("by"))
	case "NOTIFY":
		m.Text = str("kind") + " notification"
		if n, ok := mm["notification"].(monitor.Notification); ok {
			m.Text = fmt.Sprintf("%s notification: %s %s", str("kind"), alertName(alert.Key{Plugin: n.Plugin, Field: n.Field}), n.Level)
		}
	case "DELIVERY":
		m.Text = fmt.Sprintf("%s %s via %s", field(), str("outcome"), str("channel"))
		if e := str("error"); e != "" {
			m.Text += ": " + clip(e)
		}
	case "AUDIT":
		m.Text = fmt.Sprintf("%s: %s %s", str("user"), str("action"), str("target"))
	default:
		rest := map[string]any{}
		for k, v := range mm {
			if k != "ID" && k != "name" {
				rest[k] = v
			}
		}
		b, _ := json.Marshal(rest)
		m.Text = clip(string(b))
	}
	return m
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:197] + "..."
	}
	return s
}

// chartRanges are the history ranges a host page offers.
var chartRanges = map[string]time.Duration{"hour": time.Hour, "day": 24 * time.Hour, "week": 7 * 24 * time.Hour}

// maxCharts bounds the charts on one host page.
const maxCharts = 24

func (s *Service) pageHost(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("host")
	h, ok := s.engine.Host(name)
	if !ok || !s.visible(r.Context(), h) {
		s.errorPage(w, r, http.StatusNotFound, noHost(name))
		return
	}
	now := s.clock()
	lh := liveHost(h)
	body := web.HostBody{Name: h.Name, Reach: string(h.Reach), Worst: lh.Worst, Range: "hour", Ranges: []string{"hour", "day", "week"}}
	if rg := r.URL.Query().Get("range"); chartRanges[rg] > 0 {
		body.Range = rg
	}
	role := s.roleOn(r.Context(), h)
	addrs := make([]string, len(h.Addresses))
	for i, a := range h.Addresses {
		addrs[i] = a.Address
	}
	body.Info = []web.KV{
		{K: "Reachability", V: string(h.Reach) + reasonSuffix(h.ReachReason)},
		{K: "Sources", V: strings.Join(h.Sources, ", ")},
		{K: "Address", V: dashIfEmpty(strings.Join(addrs, ", "))},
		{K: "Last seen", V: web.Ago(h.LastSeen)},
		{K: "First seen", V: timeOrDash(h.FirstSeen)},
		{K: "Interval", V: fmt.Sprintf("%s (grace %s)", h.Interval, h.Grace)},
		{K: "RTT", V: rttText(h.RTT, h.RTTSmoothed)},
		{K: "Owner", V: dashIfEmpty(h.Owner)},
		{K: "Managers", V: dashIfEmpty(strings.Join(h.Managers, ", "))},
		{K: "Monitors", V: dashIfEmpty(strings.Join(h.Monitors, ", "))},
		{K: "Your role", V: role.String()},
	}
	for _, a := range h.Alerts {
		if a.Level != threshold.OK {
			body.Alerts = append(body.Alerts, s.alertRow(a, role))
		}
	}
	for _, p := range sortedKeys(h.Plugins) {
		pv := web.PluginView{Name: p, Time: h.PluginTimes[p]}
		threshold.Walk(h.Plugins[p], func(path string, v any) {
			pv.Fields = append(pv.Fields, web.KV{K: path, V: threshold.FormatValue(v)})
		})
		sort.Slice(pv.Fields, func(i, j int) bool { return pv.Fields[i].K < pv.Fields[j].K })
		body.Plugins = append(body.Plugins, pv)
	}
	span := chartRanges[body.Range]
	from := now.Add(-span)
	type series struct {
		field string
		pts   []web.Point
		rank  int
	}
	var all []series
	for _, f := range s.engine.Fields(h.Name) {
		pts := s.chartPoints(r, h.Name, f, from, span)
		all = append(all, series{f, pts, chartRank(f, pts)})
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].rank < all[j].rank })
	if len(all) > maxCharts {
		all = all[:maxCharts]
	}
	for _, x := range all {
		// A host known for less than the range is drawn over the time it
		// has data for (at least 2 minutes), not squeezed at the right.
		cf := from
		if len(x.pts) > 0 && x.pts[0].T.After(cf) {
			cf = x.pts[0].T
			if now.Sub(cf) < 2*time.Minute {
				cf = now.Add(-2 * time.Minute)
			}
		}
		body.Charts = append(body.Charts, web.Chart(web.ChartSpec{Title: x.field, Unit: web.UnitOf(x.field), From: cf, To: now, Points: x.pts}))
	}
	if c := s.site.vmControl(); c != nil {
		if details, running, ok := c.VMDetails(r.Context(), h.Name); ok {
			body.IsVM, body.Running, body.VM = true, running, details
			body.CanAct = role >= roleManager
		}
	}
	s.site.pages.Render(w, http.StatusOK, "host", s.page(r, h.Name, "", body))
}

// chartPoints is a field's history over span: the engine's recent samples
// for the last hour, the store's minute or hour rollups beyond.
func (s *Service) chartPoints(r *http.Request, host, field string, from time.Time, span time.Duration) []web.Point {
	var pts []web.Point
	if span <= time.Hour {
		if hist, _ := s.engine.History(host, field, from); len(hist) >= 2 {
			for _, x := range hist {
				pts = append(pts, web.Point{T: x.Time, Value: x.Value})
			}
			return pts
		}
	}
	res := store.Minute
	if span > 24*time.Hour {
		res = store.Hour
	}
	rollups, err := s.store.Rollups(r.Context(), host, field, res, from.Truncate(res))
	if err != nil {
		return nil
	}
	for _, ru := range rollups {
		pts = append(pts, web.Point{T: ru.Start.Add(ru.Resolution / 2), Value: ru.Mean, Min: ru.Min, Max: ru.Max, HasRange: ru.Min != ru.Max})
	}
	return pts
}

// chartRank orders a host's charts: percentages first, then load, sizes
// and round trips, then the rest; series that never change go last.
func chartRank(field string, pts []web.Point) int {
	rank := 4
	switch f := strings.ToLower(field); {
	case web.UnitOf(f) == "%":
		rank = 0
	case strings.Contains(f, "load"):
		rank = 1
	case web.UnitOf(f) == "bytes":
		rank = 2
	case web.UnitOf(f) == "ms":
		rank = 3
	}
	flat := true
	for _, p := range pts {
		if p.Value != pts[0].Value || p.HasRange {
			flat = false
			break
		}
	}
	if flat {
		rank += 10
	}
	return rank
}

func (r role) String() string {
	switch r {
	case roleMonitor:
		return "monitor"
	case roleManager:
		return "manager"
	case roleOwner:
		return "owner"
	case roleAll:
		return "admin"
	}
	return "none"
}

func reasonSuffix(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func timeOrDash(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func rttText(rtt, smooth time.Duration) string {
	if rtt <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f ms (smoothed %.1f ms)", float64(rtt)/1e6, float64(smooth)/1e6)
}

func (s *Service) alertRow(a monitor.AlertInfo, role role) web.AlertRow {
	row := web.AlertRow{
		Host: a.Key.Host, Plugin: a.Key.Plugin, Field: a.Key.Field, Name: alertName(a.Key),
		Level: a.Level.String(), Text: a.Text, Since: a.Since,
		Silenced: a.Silenced, Held: a.Held, Flapping: a.Flapping, CanAct: role >= roleManager,
	}
	if a.Key.Plugin != "reachability" && !math.IsNaN(a.Value) && !math.IsInf(a.Value, 0) {
		row.Value = threshold.FormatFloat(a.Value)
	}
	if a.Ack != nil && a.Ack.Active(s.clock()) {
		row.Ack = &web.AckView{By: a.Ack.By, Comment: a.Ack.Comment, At: a.Ack.At, Until: a.Ack.Until}
	}
	return row
}

func (s *Service) formVM(w http.ResponseWriter, r *http.Request) {
	host := r.PathValue("host")
	action := r.PostFormValue("action")
	if status, err := s.vmAction(r.Context(), host, action); err != nil {
		s.errorPage(w, r, status, err)
		return
	}
	http.Redirect(w, r, "/hosts/"+url.PathEscape(host)+"?done="+vmActions[action], http.StatusSeeOther)
}

// alertLevels are the severity filter's choices.
var alertLevels = []string{"all", "warning", "critical", "unknown"}

func (s *Service) pageAlerts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	body := web.AlertsBody{Level: "all", Levels: alertLevels, Text: q.Get("text")}
	if l := q.Get("level"); slices.Contains(alertLevels, l) {
		body.Level = l
	}
	f := monitor.AlertFilter{}
	if body.Level == "critical" {
		f.MinLevel = threshold.Critical
	}
	needle := strings.ToLower(body.Text)
	hosts := map[string]monitor.HostInfo{}
	for _, h := range s.engine.Hosts() {
		if s.visible(r.Context(), h) {
			hosts[h.Name] = h
		}
	}
	for _, a := range s.engine.Alerts(f) {
		h, ok := hosts[a.Key.Host]
		if !ok {
			continue
		}
		if body.Level == "warning" && a.Level != threshold.Warning || body.Level == "unknown" && a.Level != threshold.Unknown {
			continue
		}
		row := s.alertRow(a, s.roleOn(r.Context(), h))
		if needle != "" && !strings.Contains(strings.ToLower(row.Host+" "+row.Name+" "+row.Text), needle) {
			continue
		}
		body.Alerts = append(body.Alerts, row)
	}
	now := s.clock()
	all := s.engine.Hosts()
	for _, x := range s.engine.Silences() {
		if x.End.Before(now) || (restricted(r.Context()) && !s.silenceVisible(r.Context(), x, all)) {
			continue
		}
		target := x.Host
		if x.Plugin != "" {
			target += " " + x.Plugin
			if x.Field != "" {
				target += "." + x.Field
			}
		}
		body.Silences = append(body.Silences, web.SilenceRow{ID: x.ID, Target: target, By: x.By, Comment: x.Comment, Start: x.Start, End: x.End, Active: !x.Start.After(now)})
	}
	hist := s.site.transitions()
	for i := len(hist) - 1; i >= 0; i-- {
		if _, ok := hosts[hist[i].Host]; ok || (hist[i].Host == "" && !restricted(r.Context())) {
			body.History = append(body.History, hist[i])
		}
	}
	s.site.pages.Render(w, http.StatusOK, "alerts", s.page(r, "Alerts", "alerts", body))
}

// formAlert runs an alert form through the REST API's handler, so that
// the same checks and the audit log apply.
func (s *Service) formAlert(w http.ResponseWriter, r *http.Request) {
	host, field := r.PostFormValue("host"), r.PostFormValue("field")
	comment, dur := r.PostFormValue("comment"), r.PostFormValue("for")
	var method, path string
	var body any
	switch op := r.PathValue("op"); op {
	case "ack":
		method, path, body = http.MethodPost, "/api/0/alerts/acknowledge", AckRequest{Host: host, Field: field, For: dur, Comment: comment}
	case "unack":
		method, path, body = http.MethodPost, "/api/0/alerts/unacknowledge", map[string]string{"host": host, "field": field}
	case "silence":
		k := splitField(host, field)
		method, path, body = http.MethodPost, "/api/0/silences", SilenceRequest{Host: host, Plugin: k.Plugin, Field: k.Field, For: dur, Comment: comment}
	case "unsilence":
		method, path = http.MethodDelete, "/api/0/silences/"+url.PathEscape(r.PostFormValue("id"))
	default:
		s.errorPage(w, r, http.StatusNotFound, fmt.Errorf("no alert action %q", op))
		return
	}
	status, msg := s.internal(r, method, path, body)
	if status >= 300 {
		s.errorPage(w, r, status, errors.New(msg))
		return
	}
	http.Redirect(w, r, "/alerts?done="+r.PathValue("op"), http.StatusSeeOther)
}

// internal calls the REST API as the request's user and returns its
// status and, for an error, its message.
func (s *Service) internal(r *http.Request, method, path string, body any) (int, string) {
	var buf bytes.Buffer
	if body != nil {
		_ = json.NewEncoder(&buf).Encode(body)
	}
	req, err := http.NewRequestWithContext(r.Context(), method, path, &buf)
	if err != nil {
		return http.StatusBadRequest, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	rec := &respRecorder{header: http.Header{}, status: http.StatusOK}
	s.handler.ServeHTTP(rec, req)
	if rec.status >= 300 {
		var e apiError
		if json.Unmarshal(rec.body.Bytes(), &e) == nil && e.Error != "" {
			return rec.status, e.Error
		}
		return rec.status, strings.TrimSpace(rec.body.String())
	}
	return rec.status, rec.body.String()
}

// respRecorder is an http.ResponseWriter that keeps what is written.
type respRecorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *respRecorder) Header() http.Header         { return r.header }
func (r *respRecorder) WriteHeader(code int)        { r.status = code }
func (r *respRecorder) Write(b []byte) (int, error) { return r.body.Write(b) }

func (s *Service) pageSettings(w http.ResponseWriter, r *http.Request) {
	if restricted(r.Context()) {
		s.errorPage(w, r, http.StatusForbidden, errors.New("the settings are for admin users"))
		return
	}
	ld := s.cur.Load()
	cfg := ld.cfg
	var body web.SettingsBody
	for _, name := range sortedKeys(cfg.Users) {
		u := cfg.Users[name]
		body.Users = append(body.Users, web.UserRow{Name: name, FullName: u.FullName, Admin: u.Admin, Channels: strings.Join(u.NotificationChannels, ", ")})
	}
	for _, name := range sortedKeys(ld.channels) {
		b, _ := json.Marshal(ld.channels[name].Redacted())
		body.Channels = append(body.Channels, web.KV{K: name, V: string(b)})
	}
	body.Thresholds = thresholdText(cfg.Thresholds)
	body.Config = redactedConfig(s)
	audit := s.site.audit.list()
	for i := len(audit) - 1; i >= 0; i-- {
		body.Audit = append(body.Audit, audit[i])
	}
	if res := r.URL.Query()["result"]; len(res) > 0 {
		for _, x := range res {
			k, v, _ := strings.Cut(x, ":")
			body.Results = append(body.Results, web.KV{K: k, V: v})
		}
	}
	s.site.pages.Render(w, http.StatusOK, "settings", s.page(r, "Settings", "settings", body))
}

func (s *Service) formTest(w http.ResponseWriter, r *http.Request) {
	status, out := s.internal(r, http.MethodPost, "/api/0/notify/test", NotifyTestRequest{Channel: r.PostFormValue("channel")})
	if status >= 300 {
		s.errorPage(w, r, status, errors.New(out))
		return
	}
	var res struct {
		Results []map[string]any `json:"results"`
	}
	_ = json.Unmarshal([]byte(out), &res)
	q := url.Values{}
	for _, x := range res.Results {
		line := fmt.Sprintf("%v:%v", x["channel"], x["outcome"])
		if e, ok := x["error"]; ok && e != "" {
			line += " " + fmt.Sprint(e)
		}
		q.Add("result", line)
	}
	http.Redirect(w, r, "/settings?"+q.Encode(), http.StatusSeeOther)
}

// thresholdText lists the global threshold rules, one per line.
func thresholdText(spec threshold.Spec) string {
	set, err := threshold.Compile(spec)
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range set.Plugins() {
		rules := set.Rules(p)
		for _, f := range sortedKeys(rules) {
			j, _ := json.Marshal(ruleJSON(rules[f]))
			name := p
			if f != "" {
				name += "." + f
			}
			fmt.Fprintf(&b, "%s: %s\n", name, j)
		}
	}
	if b.Len() == 0 {
		return "(none)"
	}
	return b.String()
}

// redactedConfig is the configuration in force as YAML, with every secret
// (passwords, the register token, channel credentials) replaced.
func redactedConfig(s *Service) string {
	ld := s.cur.Load()
	cfg := ld.cfg
	const hidden = "<redacted>"
	users := map[string]any{}
	for name, u := range cfg.Users {
		m := map[string]any{"full_name": u.FullName, "admin": u.Admin, "notification_channels": nonNil(u.NotificationChannels)}
		if u.Password != "" {
			m["password"] = hidden
		}
		users[name] = m
	}
	hosts := map[string]any{}
	for name, h := range cfg.Hosts {
		hosts[name] = map[string]any{"owner": h.Owner, "managers": nonNil(h.Managers), "monitors": nonNil(h.Monitors), "watch": h.Watch, "threshold_config": nonNil(h.ThresholdConfig)}
	}
	chans := map[string]any{}
	for name, c := range ld.channels {
		chans[name] = c.Redacted()
	}
	doc := map[string]any{
		"path": cfg.Path, "interval": cfg.Interval.String(), "grace": cfg.Grace.String(),
		"threshold_renotify_interval": cfg.Renotify.String(), "metrics_interval": cfg.MetricsInterval.String(),
		"listen": cfg.Listen, "heartbeat_listen": cfg.HeartbeatListen, "max_hosts": cfg.MaxHosts,
		"default_owner": cfg.DefaultOwner, "users": users, "hosts": hosts, "notification_channels": chans,
		"journal_enabled": cfg.Journal.Enabled,
	}
	if cfg.RegisterToken != "" {
		doc["register_token"] = hidden
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return err.Error()
	}
	return string(out)
}

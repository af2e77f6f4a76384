package service

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mbvm/mb/monitor/auth"
	"github.com/mbvm/mb/monitor/journal"
	"github.com/mbvm/mb/monitor/web"
)

// VMControl lets the dashboard show and act on the VMs of the process that
// hosts the monitor (mb daemon gives one; `mb monitor serve` has none).
type VMControl interface {
	// VMDetails describes VM name (spec, agent) as labelled values and
	// says whether it runs; ok is false when name is not a VM.
	VMDetails(ctx context.Context, name string) (details []web.KV, running, ok bool)
	// VMAction starts, stops or restarts VM name.
	VMAction(ctx context.Context, name, action string) error
}

// site is the dashboard: sessions, pages, the live feed and the audit log.
type site struct {
	sessions *auth.Sessions
	limiter  *auth.Limiter
	pages    *web.Pages
	audit    *auditLog
	hub      *hub
	vms      atomic.Value // vmBox

	mu      sync.Mutex
	history []web.Message // alert and reachability transitions, oldest first
}

type vmBox struct{ c VMControl }

// historyKept is how many transitions /alerts shows.
const historyKept = 200

func newSite(s *Service) (*site, error) {
	pages, err := web.New()
	if err != nil {
		return nil, err
	}
	st := &site{sessions: auth.NewSessions(), limiter: auth.NewLimiter(), pages: pages, audit: &auditLog{}}
	st.sessions.Now = s.clock
	st.hub = newHub(s)
	return st, nil
}

// SetVMControl gives the dashboard the VMs' controls (mb daemon calls it).
func (s *Service) SetVMControl(c VMControl) { s.site.vms.Store(vmBox{c}) }

func (st *site) vmControl() VMControl {
	b, _ := st.vms.Load().(vmBox)
	return b.c
}

// tap sees every journal message: transitions go to the history, all go
// to the live feed.
func (st *site) tap(e journal.Entry) {
	m := summarize(e)
	switch m.Kind {
	case "ALERT", "REACH", "ACK", "UNACK", "SILENCE", "UNSILENCE":
		st.mu.Lock()
		if len(st.history) >= historyKept {
			copy(st.history, st.history[1:])
			st.history = st.history[:historyKept-1]
		}
		st.history = append(st.history, m)
		st.mu.Unlock()
	}
	st.hub.note(m)
}

func (st *site) transitions() []web.Message {
	st.mu.Lock()
	defer st.mu.Unlock()
	return append([]web.Message(nil), st.history...)
}

// siteHandler is the TCP listener's handler: the gate, the dashboard's
// pages and session API, and the REST API behind them.
func (s *Service) siteHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/0/auth/login", s.postLogin)
	mux.HandleFunc("POST /api/0/auth/logout", s.postLogout)
	mux.HandleFunc("GET /api/0/users", s.getUsers)
	mux.HandleFunc("GET /api/0/users/me", s.getMe)
	mux.HandleFunc("POST /api/0/hosts/{host}/vm/{action}", s.postVMAction)
	mux.HandleFunc("GET /api/0/config", s.getConfig)
	mux.HandleFunc("POST /api/0/config", s.postConfig)
	mux.HandleFunc("GET /api/0/config/backups", s.getConfigBackups)
	mux.HandleFunc("POST /api/0/config/rollback", s.postConfigRollback)
	mux.HandleFunc("GET /api/0/notification_channels", s.getChannels)
	mux.HandleFunc("POST /api/0/notification_channels", s.putChannel)
	mux.HandleFunc("PUT /api/0/notification_channels/{name}", s.putChannel)
	mux.HandleFunc("DELETE /api/0/notification_channels/{name}", s.deleteChannel)
	mux.HandleFunc("GET /api/0/hosts/{host}/access", s.getAccess)
	mux.Handle("GET /static/", web.Static())
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/live", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /login", s.pageLogin)
	mux.HandleFunc("POST /login", s.formLogin)
	mux.HandleFunc("POST /logout", s.formLogout)
	mux.HandleFunc("GET /live", s.pageLive)
	mux.HandleFunc("GET /hosts/{host}", s.pageHost)
	mux.HandleFunc("GET /plugins/{host}", s.pageHost)
	mux.HandleFunc("POST /hosts/{host}/vm", s.formVM)
	mux.HandleFunc("GET /alerts", s.pageAlerts)
	mux.HandleFunc("POST /alerts/{op}", s.formAlert)
	mux.HandleFunc("GET /settings", s.pageSettings)
	mux.HandleFunc("POST /settings/test", s.formTest)
	mux.HandleFunc("GET /ws", s.serveWS)
	mux.Handle("/", s.handler)
	return s.authenticate(mux)
}

// readBody reads a request's body (at most MaxBody) and puts it back for
// the next reader.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("reading the request body: %w", err)
	}
	if len(b) > MaxBody {
		return nil, fmt.Errorf("request body over %d bytes", MaxBody)
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b, nil
}

// auditLog keeps the newest state changes made through the API and the
// pages: who, what, when.
type auditLog struct {
	mu      sync.Mutex
	entries []web.AuditRow // oldest first
}

// auditKept is how many entries the audit log keeps in memory (each is
// also written to the journal).
const auditKept = 500

func (a *auditLog) add(t time.Time, user, action, target, info string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.entries) >= auditKept {
		copy(a.entries, a.entries[1:])
		a.entries = a.entries[:auditKept-1]
	}
	a.entries = append(a.entries, web.AuditRow{Time: t, User: user, Action: action, Target: target, Info: info})
}

func (a *auditLog) list() []web.AuditRow {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]web.AuditRow(nil), a.entries...)
}

// record adds an audit entry and journals it.
func (s *Service) record(ctx context.Context, action, target, info string) {
	user := s.userOf(ctx)
	now := s.clock()
	s.site.audit.add(now, user, action, target, info)
	_ = s.journal.Record(now, "", map[string]any{"ID": "AUDIT", "user": user, "action": action, "target": target, "info": info})
}

// VM actions a manager may take.
var vmActions = map[string]string{"start": "started", "stop": "stopped", "restart": "restarted"}

// vmAction checks the caller's role and runs a VM action; status is the
// HTTP status of a refusal.
func (s *Service) vmAction(ctx context.Context, host, action string) (int, error) {
	h, ok := s.engine.Host(host)
	if !ok || !s.visible(ctx, h) {
		return http.StatusNotFound, noHost(host)
	}
	if _, ok := vmActions[action]; !ok {
		return http.StatusBadRequest, fmt.Errorf("unknown VM action %q: give start, stop or restart", action)
	}
	if s.roleOn(ctx, h) < roleManager {
		return http.StatusForbidden, errForbidden(s.userOf(ctx), action+"ing a VM", host)
	}
	c := s.site.vmControl()
	if c == nil {
		return http.StatusNotFound, fmt.Errorf("host %q is not a VM of this daemon", host)
	}
	if _, _, ok := c.VMDetails(ctx, host); !ok {
		return http.StatusNotFound, fmt.Errorf("host %q is not a VM of this daemon", host)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	if err := c.VMAction(ctx, host, action); err != nil {
		return http.StatusConflict, err
	}
	s.record(ctx, "vm "+action, host, "")
	return http.StatusOK, nil
}

func (s *Service) postVMAction(w http.ResponseWriter, r *http.Request) {
	if _, err := readBody(r); err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, err)
		return
	}
	host, action := r.PathValue("host"), r.PathValue("action")
	if status, err := s.vmAction(r.Context(), host, action); err != nil {
		writeError(w, status, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"host": host, "action": action, "done": true})
}

func (s *Service) getConfig(w http.ResponseWriter, r *http.Request) {
	if !queryOnly(w, r) || !requireAdmin(w, r, "reading the configuration") {
		return
	}
	w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, redactedConfig(s))
}

func (s *Service) getAccess(w http.ResponseWriter, r *http.Request) {
	if !queryOnly(w, r) {
		return
	}
	h, ok := s.host(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"host": h.Name, "owner": h.Owner, "managers": nonNil(h.Managers), "monitors": nonNil(h.Monitors),
		"your_role": s.roleOn(r.Context(), h).String(),
	})
}

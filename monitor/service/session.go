package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/mbvm/mb/monitor/auth"
	"github.com/mbvm/mb/monitor/config"
)

// SessionCookie is the name of the dashboard's session cookie.
const SessionCookie = "mb_session"

// CSRFHeader carries the session's CSRF token on requests that change
// something and are authenticated by the session cookie (forms send the
// csrf_token field instead).
const CSRFHeader = "X-CSRF-Token"

// ident is who a listener request comes from.
type ident struct {
	user   string
	admin  bool
	token  string // the session token ("" for Basic or an open dashboard)
	sess   auth.Session
	cookie bool // authenticated by the session cookie: needs CSRF tokens
}

type identKey struct{}

func identOf(ctx context.Context) (ident, bool) {
	id, ok := ctx.Value(identKey{}).(ident)
	return id, ok
}

// openPath reports whether a path is served without a session: the sign-in
// page and API, the pages' assets, and the fleet receivers (which have
// their own register_token).
func openPath(r *http.Request) bool {
	p := r.URL.Path
	switch {
	case p == "/login", p == "/api/0/auth/login", p == "/favicon.ico",
		strings.HasPrefix(p, "/static/"),
		p == "/api/register", p == "/install.sh", strings.HasPrefix(p, "/download/"):
		return true
	}
	return false
}

func unsafeMethod(m string) bool {
	return m != http.MethodGet && m != http.MethodHead && m != http.MethodOptions
}

// sameOrigin reports whether a browser's request comes from a page of this
// server: its Origin header, when present, names the Host it was sent to.
// Requests without Origin (command-line clients) pass.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// authenticate is the listener's gate. With no user passwords configured
// (possible only on loopback) every request passes. Otherwise a request
// needs a session (the cookie, or Authorization: Bearer from POST
// /api/0/auth/login) or HTTP Basic credentials; a cookie-authenticated
// request that changes something also needs the session's CSRF token.
// Without credentials, /api/0/*, /metrics and /ws answer 401 and pages
// redirect to /login.
func (s *Service) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if unsafeMethod(r.Method) && !sameOrigin(r) {
			writeError(w, http.StatusForbidden, fmt.Errorf("cross-origin request refused (Origin %q is not this server)", r.Header.Get("Origin")))
			return
		}
		ld := s.cur.Load()
		if len(ld.hashes) == 0 || openPath(r) {
			if len(ld.hashes) > 0 {
				// The sign-in page still wants to know who is signed in.
				if id, ok := s.identify(r, ld.cfg); ok {
					r = r.WithContext(context.WithValue(r.Context(), identKey{}, id))
				}
			}
			next.ServeHTTP(w, r)
			return
		}
		id, ok := s.identify(r, ld.cfg)
		if !ok {
			if user, pass, basic := r.BasicAuth(); basic && s.verifier.Verify(ld.hashes, user, pass) {
				id, ok = ident{user: user, admin: ld.cfg.Users[user].Admin}, true
			}
		}
		if !ok {
			s.unauthorized(w, r)
			return
		}
		if id.cookie && unsafeMethod(r.Method) && !id.sess.CheckCSRF(csrfOf(r)) {
			writeError(w, http.StatusForbidden, errors.New("missing or wrong CSRF token: send the session's csrf_token (from /api/0/users/me) in the X-CSRF-Token header, or use Authorization: Bearer"))
			return
		}
		ctx := withAuthenticated(r.Context(), id.user, id.admin)
		ctx = context.WithValue(ctx, identKey{}, id)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// unauthorized answers a request without valid credentials.
func (s *Service) unauthorized(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if strings.HasPrefix(p, "/api/") || p == "/metrics" || p == "/ws" || r.Method != http.MethodGet {
		if p != "/ws" {
			w.Header().Set("WWW-Authenticate", `Basic realm="mb monitor", charset="UTF-8"`)
		}
		writeError(w, http.StatusUnauthorized, errors.New("authentication required: sign in (POST /api/0/auth/login, or /login in a browser), or give a configured user's name and password (HTTP Basic)"))
		return
	}
	http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
}

// identify finds the session a request carries, if any.
func (s *Service) identify(r *http.Request, cfg *config.Config) (ident, bool) {
	token, cookie := "", false
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, rest, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return ident{}, false
		}
		token = strings.TrimSpace(rest)
	} else if c, err := r.Cookie(SessionCookie); err == nil {
		token, cookie = c.Value, true
	}
	if token == "" {
		return ident{}, false
	}
	sess, ok := s.site.sessions.Lookup(token)
	if !ok {
		return ident{}, false
	}
	u, ok := cfg.Users[sess.User]
	if !ok || u.Password == "" {
		return ident{}, false
	}
	return ident{user: sess.User, admin: u.Admin, token: token, sess: sess, cookie: cookie}, true
}

// csrfOf is the CSRF token a request carries: the header, or a form's
// csrf_token field.
func csrfOf(r *http.Request) string {
	if v := r.Header.Get(CSRFHeader); v != "" {
		return v
	}
	ct := r.Header.Get("Content-Type")
	if strings.HasPrefix(ct, "application/x-www-form-urlencoded") || strings.HasPrefix(ct, "multipart/form-data") {
		r.Body = http.MaxBytesReader(nil, r.Body, MaxBody)
		return r.PostFormValue("csrf_token")
	}
	return ""
}

// clientAddr is the address a request comes from, for rate limits and logs.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// errRateLimited is a sign-in refused for too many failures.
type errRateLimited struct{ wait time.Duration }

func (e errRateLimited) Error() string {
	return fmt.Sprintf("too many failed sign-ins; try again in %d s", int(e.wait.Seconds())+1)
}

// errBadLogin is a wrong user name or password (which of them is not said).
var errBadLogin = errors.New("wrong user name or password")

// login checks a user's password, rate-limited per user name and per
// address, and starts a session.
func (s *Service) login(r *http.Request, user, password string) (string, auth.Session, error) {
	ld := s.cur.Load()
	addr := clientAddr(r)
	keys := []string{"user:" + user, "addr:" + addr}
	for _, k := range keys {
		if ok, wait := s.site.limiter.Allowed(k); !ok {
			s.log.Warn("monitor: sign-in refused, too many failures", "user", user, "addr", addr)
			return "", auth.Session{}, errRateLimited{wait}
		}
	}
	if len(ld.hashes) == 0 {
		return "", auth.Session{}, errors.New("no user has a password in monitor.yaml: the dashboard is open on loopback and needs no sign-in")
	}
	if user == "" || password == "" || !s.verifier.Verify(ld.hashes, user, password) {
		for _, k := range keys {
			s.site.limiter.Fail(k)
		}
		s.log.Warn("monitor: sign-in failed", "user", user, "addr", addr)
		return "", auth.Session{}, errBadLogin
	}
	s.site.limiter.Reset("user:" + user)
	tok, sess, err := s.site.sessions.Create(user)
	if err != nil {
		return "", auth.Session{}, fmt.Errorf("starting a session: %w", err)
	}
	s.log.Info("monitor: signed in", "user", user, "addr", addr)
	return tok, sess, nil
}

// setSessionCookie sends the session cookie: HttpOnly, SameSite=Strict,
// Secure over TLS.
func setSessionCookie(w http.ResponseWriter, r *http.Request, token string, expires time.Time) {
	c := &http.Cookie{
		Name: SessionCookie, Value: token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil, Expires: expires,
	}
	if token == "" {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}

// LoginRequest is the body of POST /api/0/auth/login.
type LoginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func (s *Service) postLogin(w http.ResponseWriter, r *http.Request) {
	var req LoginRequest
	if !decodeBody(w, r, &req) {
		return
	}
	tok, sess, err := s.login(r, req.Username, req.Password)
	var rl errRateLimited
	switch {
	case errors.As(err, &rl):
		w.Header().Set("Retry-After", fmt.Sprint(int(rl.wait.Seconds())+1))
		writeError(w, http.StatusTooManyRequests, err)
		return
	case errors.Is(err, errBadLogin):
		writeError(w, http.StatusUnauthorized, err)
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, err)
		return
	}
	setSessionCookie(w, r, tok, sess.Expires)
	writeJSON(w, http.StatusOK, map[string]any{
		"token": tok, "csrf_token": sess.CSRF, "user": sess.User, "expires": sess.Expires,
	})
}

func (s *Service) postLogout(w http.ResponseWriter, r *http.Request) {
	if id, ok := identOf(r.Context()); ok && id.token != "" {
		s.site.sessions.End(id.token)
	}
	setSessionCookie(w, r, "", time.Time{})
	writeJSON(w, http.StatusOK, map[string]any{"signed_out": true})
}

// UserJSON is a user in /api/0/users (never with the password hash).
type UserJSON struct {
	Name                 string   `json:"name"`
	FullName             string   `json:"full_name"`
	Admin                bool     `json:"admin"`
	NotificationChannels []string `json:"notification_channels"`
}

func userJSON(u config.User) UserJSON {
	return UserJSON{Name: u.Name, FullName: u.FullName, Admin: u.Admin, NotificationChannels: nonNil(u.NotificationChannels)}
}

func (s *Service) getUsers(w http.ResponseWriter, r *http.Request) {
	if !queryOnly(w, r) {
		return
	}
	cfg := s.cur.Load().cfg
	out := []UserJSON{}
	for _, name := range sortedKeys(cfg.Users) {
		if restricted(r.Context()) && name != s.userOf(r.Context()) {
			continue
		}
		u := cfg.Users[name]
		u.Name = name
		out = append(out, userJSON(u))
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": out})
}

func (s *Service) getMe(w http.ResponseWriter, r *http.Request) {
	if !queryOnly(w, r) {
		return
	}
	cfg := s.cur.Load().cfg
	name := s.userOf(r.Context())
	u := cfg.Users[name]
	u.Name = name
	out := map[string]any{"user": userJSON(u)}
	if _, ok := principalOf(r.Context()); !ok {
		out["user"] = UserJSON{Name: name, Admin: true, NotificationChannels: []string{}}
		out["open"] = true
	}
	if id, ok := identOf(r.Context()); ok && id.token != "" {
		out["csrf_token"] = id.sess.CSRF
		out["expires"] = id.sess.Expires
	}
	writeJSON(w, http.StatusOK, out)
}

// endChangedSessions signs out the users whose password changed or who
// are gone in the new configuration.
func (s *Service) endChangedSessions(old, cur *config.Config) {
	for name, u := range old.Users {
		nu, ok := cur.Users[name]
		if !ok || nu.Password != u.Password || nu.Password == "" {
			if n := s.site.sessions.EndUser(name, ""); n > 0 {
				s.log.Info("monitor: ended sessions of a user whose password changed or who was removed", "user", name, "sessions", n)
			}
		}
	}
}

// auditPaths are the API calls the audit log records.
var auditPaths = []string{
	"POST /api/0/alerts/acknowledge", "POST /api/0/alerts/unacknowledge",
	"POST /api/0/silences", "DELETE /api/0/silences/", "POST /api/0/reload", "POST /api/0/notify/test",
}

// audited records successful state changes of next in the audit log.
func (s *Service) audited(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Method + " " + r.URL.Path
		if !slices.ContainsFunc(auditPaths, func(p string) bool { return strings.HasPrefix(key, p) }) {
			next.ServeHTTP(w, r)
			return
		}
		body, err := readBody(r)
		if err != nil {
			writeError(w, http.StatusRequestEntityTooLarge, err)
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		if sw.status >= 300 {
			return
		}
		var fields map[string]any
		_ = json.Unmarshal(body, &fields)
		target, _ := fields["host"].(string)
		if f, ok := fields["field"].(string); ok && f != "" {
			target += " " + f
		}
		if id := r.PathValue("id"); id != "" {
			target = "silence " + id
		} else if strings.HasPrefix(r.URL.Path, "/api/0/silences/") {
			target = "silence " + strings.TrimPrefix(r.URL.Path, "/api/0/silences/")
		}
		delete(fields, "host")
		delete(fields, "field")
		info := ""
		if len(fields) > 0 {
			b, _ := json.Marshal(fields)
			info = string(b)
		}
		s.site.audit.add(s.clock(), s.userOf(r.Context()), strings.TrimPrefix(key, "POST "), target, info)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

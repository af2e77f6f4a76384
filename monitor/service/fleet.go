package service

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mbvm/mb/monitor/fleet"
)

// Fleet returns the fleet receivers (registrations, heartbeats, socktop
// polls, dynamic DNS).
func (s *Service) Fleet() *fleet.Fleet { return s.fleet }

// isFleetPath reports whether a path is one of the fleet's open endpoints,
// served on the TCP listener without the users' authentication (the
// reporting machines have no user; register_token guards registration).
func isFleetPath(p string) bool {
	return p == "/api/register" || p == "/api/vms" || strings.HasPrefix(p, "/api/vms/") ||
		p == "/install.sh" || strings.HasPrefix(p, "/download/")
}

// withFleet puts the fleet's open endpoints in front of the TCP
// listener's handler (everything else goes to next, behind the users'
// authentication).
func (s *Service) withFleet(next http.Handler) http.Handler {
	open := s.fleet.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isFleetPath(r.URL.Path) {
			open.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// CommandRequest is the body of POST /api/0/hosts/{host}/command.
type CommandRequest struct {
	Command string `json:"command"`
}

// UpdateRequest is the body of POST /api/0/hosts/{host}/update; URL
// defaults to this server's /install.sh.
type UpdateRequest struct {
	URL string `json:"url"`
}

// QueuedJSON answers a queued command or update.
type QueuedJSON struct {
	ID   string `json:"id"`
	Host string `json:"host"`
}

// postCommand queues a CMD for an hbc host (owner or manager).
func (s *Service) postCommand(w http.ResponseWriter, r *http.Request) {
	h, ok := s.host(w, r)
	if !ok {
		return
	}
	if s.roleOn(r.Context(), h) < roleManager {
		writeError(w, http.StatusForbidden, errForbidden(s.userOf(r.Context()), "queueing a command", h.Name))
		return
	}
	var req CommandRequest
	if !decodeBody(w, r, &req) {
		return
	}
	id, err := s.fleet.QueueCommand(h.Name, req.Command)
	s.queued(w, h.Name, id, err)
}

// postUpdate queues an UPD for an hbc host (owner or manager).
func (s *Service) postUpdate(w http.ResponseWriter, r *http.Request) {
	h, ok := s.host(w, r)
	if !ok {
		return
	}
	if s.roleOn(r.Context(), h) < roleManager {
		writeError(w, http.StatusForbidden, errForbidden(s.userOf(r.Context()), "queueing an update", h.Name))
		return
	}
	var req UpdateRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.URL == "" {
		if r.Host == "" || strings.ContainsAny(r.Host, "/ ") {
			writeError(w, http.StatusBadRequest, errors.New(`give "url": the installer's URL`))
			return
		}
		req.URL = "http://" + r.Host + "/install.sh"
	}
	id, err := s.fleet.QueueUpdate(h.Name, req.URL)
	s.queued(w, h.Name, id, err)
}

func (s *Service) queued(w http.ResponseWriter, host, id string, err error) {
	switch {
	case err == nil:
		writeJSON(w, http.StatusAccepted, QueuedJSON{ID: id, Host: host})
	case errors.Is(err, fleet.ErrNoHost), errors.Is(err, fleet.ErrNotHBC):
		writeError(w, http.StatusConflict, fmt.Errorf("%s: %w", host, err))
	case errors.Is(err, fleet.ErrQueueFull):
		writeError(w, http.StatusTooManyRequests, err)
	default:
		writeError(w, http.StatusBadRequest, err)
	}
}

// getFleet answers the fleet receivers' counters (admin).
func (s *Service) getFleet(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r, "/api/0/fleet") {
		return
	}
	out := struct {
		HeartbeatListen string      `json:"heartbeat_listen,omitempty"`
		Stats           fleet.Stats `json:"stats"`
	}{Stats: s.fleet.Stats()}
	if a := s.fleet.HeartbeatAddr(); a != nil {
		out.HeartbeatListen = a.String()
	}
	writeJSON(w, http.StatusOK, out)
}

var descFleet = prometheus.NewDesc("mb_monitor_fleet_events_total",
	"The fleet receivers' counters since the monitor started (event is a key of GET /api/0/fleet's stats: datagrams, htb, plg, malformed, inflate_limit, hosts_refused, registrations, socktop_errors, dns_failures, ...).", []string{"event"}, nil)

// fleetCollector exposes the fleet's counters.
type fleetCollector struct{ s *Service }

func (c fleetCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descFleet }

func (c fleetCollector) Collect(ch chan<- prometheus.Metric) {
	b, err := json.Marshal(c.s.fleet.Stats())
	if err != nil {
		return
	}
	var m map[string]uint64
	if json.Unmarshal(b, &m) != nil {
		return
	}
	for k, v := range m {
		ch <- prometheus.MustNewConstMetric(descFleet, prometheus.CounterValue, float64(v), k)
	}
}

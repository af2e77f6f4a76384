package fleet

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/mbvm/mb/monitor"
)

// MaxRegisterBody bounds a registration's body.
const MaxRegisterBody = 64 << 10

// Handler serves the fleet's HTTP endpoints, outside the users'
// authentication (register_token guards the tracker's when set):
//
//	POST   /api/register          a VM tracker registration
//	GET    /api/vms               the registered hosts
//	DELETE /api/vms/{hostname}    forget one
//	GET    /install.sh            the mb-agent installer
//	GET    /download/{file}       mb-agent-linux-amd64 / -arm64
func (f *Fleet) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/register", f.register)
	mux.HandleFunc("GET /api/vms", f.listVMs)
	mux.HandleFunc("DELETE /api/vms/{hostname}", f.deleteVM)
	mux.HandleFunc("GET /install.sh", f.installScript)
	mux.HandleFunc("GET /download/{file}", f.download)
	return mux
}

// Registration is the body of POST /api/register (the VM tracker's).
type Registration struct {
	Hostname  string `json:"hostname"`
	IPAddress string `json:"ip_address"`
	Interface string `json:"interface"`
}

// RegisteredVM is one entry of GET /api/vms.
type RegisteredVM struct {
	Hostname  string    `json:"hostname"`
	IPAddress string    `json:"ip_address"`
	Interface string    `json:"interface"`
	LastSeen  time.Time `json:"last_seen"`
	// Status is online (reporting), offline (overdue or down) or waiting
	// (not heard from since the monitor started, or stopped).
	Status string `json:"status"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// tokenOK checks the Bearer token when register_token is set; it answers
// 401 itself.
func (f *Fleet) tokenOK(w http.ResponseWriter, r *http.Request) bool {
	tok := f.set.Load().RegisterToken
	if tok == "" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(tok)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mb fleet"`)
		writeError(w, http.StatusUnauthorized, "this monitor requires its register_token: send Authorization: Bearer TOKEN (mb-agent register --token)")
		return false
	}
	return true
}

func (f *Fleet) register(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "use POST /api/register with a JSON body")
		return
	}
	if !f.tokenOK(w, r) {
		f.stats.registerRefused.Add(1)
		return
	}
	reg, status, err := decodeRegistration(w, r)
	if err != nil {
		f.stats.registerRefused.Add(1)
		writeError(w, status, err.Error())
		return
	}
	now := f.clock()
	set := f.set.Load()
	f.mu.Lock()
	h, err := f.admit(reg.Hostname, set.RegisterToken != "")
	if err != nil {
		f.mu.Unlock()
		f.stats.registerRefused.Add(1)
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	var learned time.Duration
	if !h.regLast.IsZero() {
		if gap := now.Sub(h.regLast); gap >= time.Second {
			copy(h.regGaps[1:], h.regGaps[:len(h.regGaps)-1])
			h.regGaps[0] = min(gap, MaxInterval)
			h.regN = min(h.regN+1, len(h.regGaps))
		}
	}
	h.regLast = now
	for _, g := range h.regGaps[:h.regN] {
		if learned == 0 || g < learned {
			learned = g // the shortest recent gap: an outage does not stretch it
		}
	}
	h.iface = reg.Interface
	changed := h.noteAddress(reg.IPAddress)
	f.mu.Unlock()
	o := monitor.Observation{Host: reg.Hostname, Source: SourceTracker, Address: reg.IPAddress}
	if set.Hosts[reg.Hostname].Interval == 0 {
		o.Interval = learned
	}
	if err := f.observe(r.Context(), o); err != nil {
		f.stats.registerRefused.Add(1)
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	f.stats.registrations.Add(1)
	if changed {
		f.addressChanged(reg.Hostname, reg.IPAddress)
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "registered", "timestamp": now.UTC().Format(time.RFC3339)})
}

func decodeRegistration(w http.ResponseWriter, r *http.Request) (Registration, int, error) {
	var reg Registration
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxRegisterBody))
	if err := dec.Decode(&reg); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return reg, http.StatusRequestEntityTooLarge, fmt.Errorf("body over %d bytes", MaxRegisterBody)
		}
		return reg, http.StatusBadRequest, fmt.Errorf("bad JSON: %v (want {\"hostname\":...,\"ip_address\":...,\"interface\":...})", err)
	}
	switch {
	case reg.Hostname == "":
		return reg, http.StatusBadRequest, errors.New("missing hostname")
	case reg.IPAddress == "":
		return reg, http.StatusBadRequest, errors.New("missing ip_address")
	case !validName(reg.Hostname):
		return reg, http.StatusBadRequest, nameError(reg.Hostname)
	}
	ip, err := netip.ParseAddr(reg.IPAddress)
	if err != nil {
		return reg, http.StatusBadRequest, fmt.Errorf("ip_address %q is not an IP address", reg.IPAddress)
	}
	reg.IPAddress = ip.Unmap().String()
	if reg.Interface == "" {
		reg.Interface = "unknown"
	}
	if len(reg.Interface) > 64 {
		return reg, http.StatusBadRequest, errors.New("interface name over 64 characters")
	}
	return reg, 0, nil
}

func (f *Fleet) listVMs(w http.ResponseWriter, r *http.Request) {
	if !f.tokenOK(w, r) {
		return
	}
	type entry struct{ name, addr, iface string }
	var es []entry
	f.mu.Lock()
	for name, h := range f.hosts {
		if h.iface != "" {
			es = append(es, entry{name, h.addr, h.iface})
		}
	}
	f.mu.Unlock()
	sort.Slice(es, func(i, j int) bool { return es[i].name < es[j].name })
	out := make([]RegisteredVM, 0, len(es))
	for _, e := range es {
		info, ok := f.eng.Host(e.name)
		if !ok {
			continue
		}
		v := RegisteredVM{Hostname: e.name, IPAddress: e.addr, Interface: e.iface, LastSeen: info.LastSeen.UTC(), Status: "waiting"}
		switch info.Reach {
		case monitor.Up:
			v.Status = "online"
		case monitor.Overdue, monitor.Down:
			v.Status = "offline"
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, out)
}

func (f *Fleet) deleteVM(w http.ResponseWriter, r *http.Request) {
	if !f.tokenOK(w, r) {
		return
	}
	name := r.PathValue("hostname")
	f.mu.Lock()
	h := f.hosts[name]
	registered := h != nil && h.iface != ""
	f.mu.Unlock()
	if !registered {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no registered host %q", name))
		return
	}
	if err := f.eng.RemoveHost(r.Context(), name); err != nil && !errors.Is(err, monitor.ErrNoHost) {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	f.forget(name)
	writeJSON(w, http.StatusOK, map[string]string{"status": "deleted", "hostname": name})
}

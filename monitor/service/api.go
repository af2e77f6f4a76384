package service

import (
	"encoding/json"
	"net/http"
)

// routes builds the handler of /api/0/ and /metrics.
func (s *Service) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics.handler())
	mux.HandleFunc("GET /api/0/hosts", s.getHosts)
	mux.HandleFunc("/api/0/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, errNoEndpoint(r))
	})
	return mux
}

func (s *Service) getHosts(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.engine.Hosts())
}

// writeJSON writes v as the JSON reply.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
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

type endpointError string

func (e endpointError) Error() string { return string(e) }

func errNoEndpoint(r *http.Request) error {
	return endpointError("no such endpoint: " + r.Method + " " + r.URL.Path + " (see the Monitor API section of the README)")
}

package service

import "net/http"

// metrics serves /metrics.
type metrics struct{ s *Service }

func newMetrics(s *Service) *metrics { return &metrics{s: s} }

func (m *metrics) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	})
}

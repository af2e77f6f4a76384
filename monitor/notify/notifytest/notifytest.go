// Package notifytest helps the channel packages' tests: a recording HTTP
// server standing in for a service, and parsing a channel from YAML.
package notifytest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mbvm/mb/monitor/notify"
)

// Request is one request the server received.
type Request struct {
	Method string
	Path   string // the escaped path, as sent
	Query  map[string][]string
	Header http.Header
	Body   []byte
}

// Server is an httptest server that records every request and answers
// with what Reply returns (by default 200 with Body).
type Server struct {
	*httptest.Server
	mu       sync.Mutex
	requests []Request
	// Reply, if set, answers each request (n counts from 1).
	Reply func(n int, r Request) (status int, body string)
	// Body is the default answer's body.
	Body string
}

// NewServer starts a recording server, closed when the test ends.
func NewServer(t *testing.T) *Server {
	s := &Server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := Request{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.Query(), Header: r.Header.Clone(), Body: body}
		s.mu.Lock()
		s.requests = append(s.requests, req)
		n, reply, def := len(s.requests), s.Reply, s.Body
		s.mu.Unlock()
		status, out := http.StatusOK, def
		if reply != nil {
			status, out = reply(n, req)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, out)
	}))
	t.Cleanup(s.Close)
	return s
}

// Requests returns the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Parse reads one channel named "c" from the YAML of its entry, with the
// given types, failing the test on an error.
func Parse(t *testing.T, types notify.Types, entry string) notify.Channel {
	t.Helper()
	chans, err := ParseErr(types, entry)
	if err != nil {
		t.Fatal(err)
	}
	return chans["c"].Channel
}

// ParseErr is Parse returning the error.
func ParseErr(types notify.Types, entry string) (map[string]notify.Configured, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("c:\n"+indent(entry)), &doc); err != nil {
		return nil, err
	}
	return notify.ParseChannels(&doc, notify.Options{Types: types})
}

func indent(s string) string {
	out := "  "
	for i := 0; i < len(s); i++ {
		out += string(s[i])
		if s[i] == '\n' && i+1 < len(s) {
			out += "  "
		}
	}
	return out
}

// Alert is a CRITICAL alert message for tests.
func Alert() notify.Message {
	return notify.Message{
		ID: "0123456789abcdef", Time: time.Date(2026, 11, 26, 5, 0, 0, 0, time.UTC),
		Host: "web-01", Plugin: "cpu_monitor", Field: "cpu_percent",
		Level: notify.Critical, Previous: notify.Warning, Value: "97.5",
		Text: "cpu_percent is 97.5 (> 90)",
	}
}

// Recovery is the recovery of Alert.
func Recovery() notify.Message {
	m := Alert()
	m.ID, m.Level, m.Previous, m.Recovery, m.Value, m.Text = "fedcba9876543210", notify.OK, notify.Critical, true, "12", "cpu_percent is 12"
	m.Time = m.Time.Add(10 * time.Minute)
	return m
}

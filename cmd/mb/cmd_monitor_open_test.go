package main

import (
	"strings"
	"testing"
)

func TestDashboardURL(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:50004": "http://127.0.0.1:50004/live",
		"0.0.0.0:8080":    "http://127.0.0.1:8080/live",
		":8080":           "http://127.0.0.1:8080/live",
		"[::1]:9000":      "http://[::1]:9000/live",
		"mon.example:80":  "http://mon.example:80/live",
	} {
		got, err := dashboardURL(in, false)
		if err != nil || got != want {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
	if got, _ := dashboardURL("0.0.0.0:8443", true); got != "https://127.0.0.1:8443/live" {
		t.Errorf("with TLS: %q", got)
	}
	for in, says := range map[string]string{"": "needs listen", "127.0.0.1:0": "no fixed port"} {
		if _, err := dashboardURL(in, false); err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("%q: %v, want %q", in, err, says)
		}
	}
}

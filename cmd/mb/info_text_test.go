package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/mbvm/mb/daemon/api"
	"github.com/mbvm/mb/vmhost"
)

// mb info prints what the guest reported (hostname, OS) and what vmhost
// relays in its details; none of it may carry terminal control sequences,
// whatever reached the API.
func TestInfoPrintsNoControlCharacters(t *testing.T) {
	vm := &api.VM{Name: "x", State: "running",
		Agent:   &vmhost.AgentInfo{State: "ok", Hostname: "evil\x1b]0;pwned\x07", OS: "Deb\x1b[2Jian\u202e"},
		Details: map[string]any{"guest_note": "a\x1b[31mred"}}
	var out bytes.Buffer
	printInfo(&out, vm)
	if strings.ContainsAny(out.String(), "\x1b\x07\u202e") {
		t.Errorf("mb info output carries control characters:\n%q", out.String())
	}
	if !strings.Contains(out.String(), "evil]0;pwned") {
		t.Errorf("the printable part of the hostname is gone:\n%s", out.String())
	}
}

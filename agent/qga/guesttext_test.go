package qga_test

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/agent/qga"
)

// scriptedGuest answers the commands the Watcher sends with a hostname and
// an OS name full of terminal escape sequences, as root in a guest can make
// its agent report.
func scriptedGuest(ctx context.Context, c net.Conn) {
	dec := json.NewDecoder(c)
	for ctx.Err() == nil {
		var req struct {
			Execute   string          `json:"execute"`
			Arguments json.RawMessage `json:"arguments"`
		}
		if err := dec.Decode(&req); err != nil {
			return
		}
		var reply string
		switch req.Execute {
		case "guest-sync-delimited", "guest-sync":
			var a struct {
				ID int64 `json:"id"`
			}
			json.Unmarshal(req.Arguments, &a)
			b, _ := json.Marshal(a.ID)
			reply = `{"return":` + string(b) + `}`
			if req.Execute == "guest-sync-delimited" {
				reply = "\xff" + reply
			}
		case "guest-ping":
			reply = `{"return":{}}`
		case "guest-info":
			reply = `{"return":{"version":"7.2.0","supported_commands":[]}}`
		case "guest-get-host-name":
			reply = `{"return":{"host-name":"evil\u001b]0;pwned\u0007\u001b[2J"}}`
		case "guest-get-osinfo":
			reply = `{"return":{"pretty-name":"Debian\u001b[31m red\u202eevil\n2nd line"}}`
		case "guest-network-get-interfaces":
			reply = `{"return":[]}`
		default:
			reply = `{"error":{"class":"CommandNotFound","desc":"no"}}`
		}
		if _, err := c.Write([]byte(reply + "\n")); err != nil {
			return
		}
	}
}

// TestGuestTextIsCleaned checks that the hostname and OS a guest reports
// reach the host without control characters or bidi overrides, so that
// `mb info` cannot be made to drive the user's terminal.
func TestGuestTextIsCleaned(t *testing.T) {
	path := serveSocket(t, scriptedGuest)
	c := newClient(t, path, 2*time.Second)
	w := qga.NewWatcher(c, qga.WatcherOptions{Interval: 100 * time.Millisecond, Logger: quietLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { w.Run(ctx); close(stopped) }()
	defer func() { cancel(); <-stopped }()
	waitFor(t, func() bool { return infoWithin(t, w).Hostname != "" }, "the guest's hostname")
	info := infoWithin(t, w)
	for what, s := range map[string]string{"hostname": info.Hostname, "os": info.OS} {
		if strings.ContainsAny(s, "\x1b\x07\n\u202e") {
			t.Errorf("%s %q still carries control characters", what, s)
		}
	}
	if info.Hostname != "evil]0;pwned[2J" || info.OS != "Debian[31m redevil2nd line" {
		t.Errorf("hostname %q, os %q: the printable text should stay", info.Hostname, info.OS)
	}
}

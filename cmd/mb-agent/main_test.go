package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/agent/cmdsock"
	"github.com/mbvm/mb/agent/guestmsg"
	"github.com/mbvm/mb/agent/qgaproto"
)

func TestRunRejectsBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"--help"}, 0},
		{[]string{"--role=init"}, 2},
		{[]string{"--log-level=loud"}, 2},
		{[]string{"--no-such-flag"}, 2},
	} {
		if got := run(c.args); got != c.want {
			t.Errorf("run(%q) = %d, want %d", c.args, got, c.want)
		}
	}
}

func TestSendExitsWithTheStatus(t *testing.T) {
	reg := cmdsock.NewRegistry()
	q := guestmsg.NewQueue(0)
	if err := guestmsg.Register(reg, q, "test"); err != nil {
		t.Fatal(err)
	}
	for name, status := range map[string]int{"big": 300, "negative": -1} {
		reg.Register(name, func(context.Context, *cmdsock.Request) (cmdsock.Reply, error) {
			return cmdsock.Reply{"Status": status}, nil
		})
	}
	path := filepath.Join(t.TempDir(), "c.sock")
	srv, err := cmdsock.NewServer(reg, cmdsock.Options{Path: path, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Run(ctx)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		req  string
		want int
		out  string
	}{
		{`{"Command":"agent.ping"}`, 0, `"StatusMessage":"pong"`},
		{`{"Command":"mb.event","level":"info","text":"hello"}`, 0, `"seq":1`},
		{`{"Command":"nope"}`, 101, `no handler`},
		{`not json`, 102, `not valid JSON`},
		{`{"Command":"mb.event"}`, 105, `text is empty`},
		{`{"Command":"big"}`, 255, `"Status":300`},
		{`{"Command":"negative"}`, 255, `"Status":-1`},
	} {
		var out, errb bytes.Buffer
		if got := runSend([]string{"--socket", path, c.req}, nil, &out, &errb); got != c.want || !strings.Contains(out.String(), c.out) {
			t.Errorf("send %s: exit %d, stdout %q, stderr %q; want %d and %q", c.req, got, out.String(), errb.String(), c.want, c.out)
		}
	}
	var out, errb bytes.Buffer
	if got := runSend([]string{"--socket", path + ".missing", `{}`}, nil, &out, &errb); got != 103 || !strings.Contains(errb.String(), "command socket") {
		t.Errorf("unreachable socket: exit %d, %q", got, errb.String())
	}
	if got := runSend([]string{"--socket", path}, nil, &out, &errb); got != 2 {
		t.Errorf("no JSON argument: exit %d", got)
	}
	// "-" reads the request from stdin; 2 MiB of it is refused with 102,
	// and the reply still arrives although the server stopped reading.
	out.Reset()
	if got := runSend([]string{"--socket", path, "-"}, strings.NewReader(`{"Command":"agent.ping"}`), &out, &errb); got != 0 {
		t.Errorf("send - with a ping on stdin: exit %d, %q", got, out.String())
	}
	out.Reset()
	big := `{"Command":"mb.event","text":"` + strings.Repeat("x", 2<<20) + `"}`
	if got := runSend([]string{"--socket", path, "-"}, strings.NewReader(big), &out, &errb); got != 102 || !strings.Contains(out.String(), "over 1048576 bytes") {
		t.Errorf("send - with 2 MiB: exit %d, %q, %q", got, out.String(), errb.String())
	}
	if m := q.Collect(qgaproto.MessagesArgs{}); len(m.Messages) != 1 || m.Messages[0].Text != "hello" {
		t.Errorf("queued %+v", m.Messages)
	}
}

func TestSocktopSubcommandFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"socktop", "--help"}, 0},
		{[]string{"socktop", "extra"}, 2},
		{[]string{"socktop", "--no-such-flag"}, 2},
		{[]string{"--command-group=no-such-group-h15"}, 2},
	} {
		if got := run(c.args); got != c.want {
			t.Errorf("run(%q) = %d, want %d", c.args, got, c.want)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/agent"
	"github.com/mbvm/mb/agent/cmdsock"
	"github.com/mbvm/mb/agent/guestmsg"
)

// withHostAgentSocket is withHostAgent with mb-agent's command socket: the
// agent served on the host for the fake backend keeps a message queue, and
// the returned send delivers a request to its command socket, as a guest
// program would.
func withHostAgentSocket(e *testEnv) (send func(req string) string) {
	e.t.Helper()
	q := guestmsg.NewQueue(0)
	reg := cmdsock.NewRegistry()
	if err := guestmsg.Register(reg, q, agent.Version); err != nil {
		e.t.Fatal(err)
	}
	csock := filepath.Join(e.root, "cmd.sock")
	srv, err := cmdsock.NewServer(reg, cmdsock.Options{Path: csock})
	if err != nil {
		e.t.Fatal(err)
	}
	sock := filepath.Join(e.root, "ga.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go srv.Run(ctx)
	ga := agent.NewServer(agent.Options{Shutdown: func(context.Context, string) error { return nil }, Messages: q})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				stop := context.AfterFunc(ctx, func() { c.Close() })
				defer stop()
				ga.ServeConn(ctx, c)
			}()
		}
	}()
	e.t.Cleanup(func() { cancel(); ln.Close() })
	e.extraEnv = append(e.extraEnv, "MB_FAKE_AGENT_SOCKET="+sock)
	return func(req string) string {
		e.t.Helper()
		var out []byte
		e.eventually("the command socket", func() bool {
			out, err = cmdsock.Send(context.Background(), csock, []byte(req))
			return err == nil
		})
		return string(out)
	}
}

// mb start --wait app:NAME returns once a guest program says NAME is
// ready, not when the agent answers; mb ls --json shows the name; an
// mb.event shows in mb events as guest-event, cleaned of control
// characters.
func TestStartWaitAppAndGuestEventsFake(t *testing.T) {
	e := newEnv(t)
	send := withHostAgentSocket(e)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := e.command(ctx, "start", "x", "--backend", "fake", "--wait", "app:web")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	e.eventually("the agent of x", func() bool {
		v := findVM(e.list(), "x")
		return v != nil && v.AgentState() == "ok"
	})
	// Another readiness does not end the wait.
	send(`{"Command":"mb.ready","name":"db"}`)
	e.eventually("readiness db in mb ls", func() bool {
		v := findVM(e.list(), "x")
		return v != nil && v.AppReady("db")
	})
	select {
	case err := <-done:
		t.Fatalf("mb start --wait app:web returned before web was ready: %v\n%s%s", err, out.String(), errb.String())
	default:
	}
	if r := send(`{"Command":"mb.ready","name":"web","detail":"port 80"}`); !strings.Contains(r, `"Status":0`) {
		t.Fatalf("mb.ready: %s", r)
	}
	select {
	case err := <-done:
		if err != nil || !strings.Contains(out.String(), "x is ready") {
			t.Fatalf("mb start: %v\n%s%s", err, out.String(), errb.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("mb start --wait app:web did not return after mb.ready web")
	}
	if v := findVM(e.list(), "x"); v == nil || strings.Join(v.Agent.Ready, ",") != "db,web" {
		t.Errorf("mb ls --json readiness: %+v", v)
	}

	send(`{"Command":"mb.event","level":"warning","text":"disk\u001b[2J 91% full"}`)
	e.eventually("the guest-event in mb events", func() bool {
		for _, ev := range e.events() {
			if ev.VM == "x" && ev.Type == "guest-event" {
				if ev.Level != "warning" || ev.Reason != "disk[2J 91% full" {
					t.Fatalf("guest-event %+v", ev)
				}
				return true
			}
		}
		return false
	})
	if txt := e.ok("events"); !strings.Contains(txt, "guest-event") || !strings.Contains(txt, "warning:  disk[2J 91% full") || !strings.Contains(txt, "guest-ready") {
		t.Errorf("mb events:\n%s", txt)
	}

	// The event is in the monitor's message stream too.
	e.eventually("the guest event in /api/0/messages", func() bool {
		code, body := e.httpCall("GET", "/api/0/messages", "")
		return code == 200 && strings.Contains(body, "91% full")
	})

	// mb.metric fields become plugin data on the VM's monitor host, where
	// thresholds apply to them like to any plugin's.
	if r := send(`{"Command":"mb.metric","plugin":"app_monitor","fields":{"queue_depth":42}}`); !strings.Contains(r, `"Status":0`) {
		t.Fatalf("mb.metric: %s", r)
	}
	e.eventually("app_monitor.queue_depth in the monitor", func() bool {
		r := e.mb("monitor", "history", "x", "app_monitor.queue_depth", "--json")
		return r.code == 0 && strings.Contains(r.stdout, "42")
	})

	// Bad --wait values are refused before anything starts.
	if r := e.mb("start", "y", "--backend", "fake", "--wait", "service"); r.code == 0 || !strings.Contains(r.stderr, "app:NAME") {
		t.Errorf("--wait service: %s", r)
	}
	if r := e.mb("start", "y", "--backend", "fake", "--wait", "app", "--no-wait"); r.code == 0 || !strings.Contains(r.stderr, "contradict") {
		t.Errorf("--wait app --no-wait: %s", r)
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mbvm/mb/agent"
	"github.com/mbvm/mb/monitor/notify/notifytest"
)

// withFreezableAgent is withHostAgent whose agent can be frozen: while
// frozen, requests reach it only once it thaws, so the host sees an agent
// that stops answering, as a hung guest's would.
func withFreezableAgent(e *testEnv) (frozen *atomic.Bool) {
	e.t.Helper()
	frozen = &atomic.Bool{}
	sock := filepath.Join(e.root, "ga.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := agent.NewServer(agent.Options{Shutdown: func(context.Context, string) error { return nil }})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			guest, host := net.Pipe()
			go func() {
				defer guest.Close()
				srv.ServeConn(ctx, guest)
			}()
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, host)
			}()
			go func() {
				defer host.Close()
				stop := context.AfterFunc(ctx, func() { c.Close() })
				defer stop()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					for frozen.Load() && ctx.Err() == nil {
						time.Sleep(20 * time.Millisecond)
					}
					if n > 0 {
						if _, werr := host.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	e.t.Cleanup(func() { cancel(); ln.Close() })
	e.extraEnv = append(e.extraEnv, "MB_FAKE_AGENT_SOCKET="+sock)
	return frozen
}

// A guest agent that stops answering makes its VM down (one
// notification), and the VM is back up (a recovery) once it answers
// again; the VM itself never stopped running.
func TestMonitorUnresponsiveAgentIsDown(t *testing.T) {
	e := newEnv(t)
	frozen := withFreezableAgent(e)
	hook := notifytest.NewServer(t)
	r := &monitorReceivers{t: t, hook: hook}
	writeMonitorYAML(t, e.home, fmt.Sprintf("metrics_interval: 300ms\ngrace: 30s\nnotification_channels:\n  hook:\n    type: webhook\n    url: %s/hook\n", hook.URL))
	specFile := filepath.Join(e.root, "ag.yaml")
	if err := os.WriteFile(specFile, []byte("name: ag\nbackend: fake\nagent_interval: 200ms\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.ok("start", "ag", "-f", specFile)
	e.eventually("the agent of ag", func() bool {
		v := findVM(e.list(), "ag")
		return v != nil && v.AgentState() == "ok"
	})
	// Up first: the host is known and reporting.
	e.eventually("the monitor to know ag", func() bool {
		code, body := e.httpCall("GET", "/api/0/hosts", "")
		return code == 200 && containsAll(body, `"ag"`, `"up"`)
	})
	frozen.Store(true)
	r.waitHook("ag", 1, "the down notification")
	frozen.Store(false)
	r.waitHook("ag", 2, "the recovery")
	settle()
	want := []string{"CRITICAL reachability", "OK reachability"}
	if got := whats(r.hookNotes("ag")); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("webhook got %q, want %q", got, want)
	}
	if v := e.vm("ag"); v.State != "running" || v.Restarts != 0 {
		t.Errorf("the VM after its agent hung: %s, %d restarts; want running, never restarted", v.State, v.Restarts)
	}
}

// waitHook waits until the webhook has at least n notifications about host.
func (r *monitorReceivers) waitHook(host string, n int, what string) {
	r.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for len(r.hookNotes(host)) < n {
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out waiting for %s: %v", what, r.hookNotes(host))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

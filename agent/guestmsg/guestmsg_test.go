package guestmsg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/agent/cmdsock"
	"github.com/mbvm/mb/agent/qgaproto"
)

func TestQueueDropsOldestAndCounts(t *testing.T) {
	q := NewQueue(1000)
	q.Push(qgaproto.GuestMessage{Kind: qgaproto.MessageReady, Name: "web"})
	for i := range 1004 {
		q.Push(qgaproto.GuestMessage{Kind: qgaproto.MessageEvent, Text: fmt.Sprint(i)})
	}
	m := q.Collect(qgaproto.MessagesArgs{})
	if m.Dropped != 5 || m.Messages[0].Seq != 6 || len(m.Messages) != qgaproto.MaxMessagesPerCall || !m.More {
		t.Fatalf("dropped %d, first seq %d, %d messages, more %v", m.Dropped, m.Messages[0].Seq, len(m.Messages), m.More)
	}
	// The readiness outlives its message.
	if len(m.Ready) != 1 || m.Ready[0].Name != "web" {
		t.Errorf("ready %v", m.Ready)
	}
	// Asking again without acknowledging gives the same messages.
	if again := q.Collect(qgaproto.MessagesArgs{}); again.Messages[0].Seq != 6 {
		t.Errorf("unacknowledged messages changed: first seq %d", again.Messages[0].Seq)
	}
	last := m.Messages[len(m.Messages)-1].Seq
	// An acknowledgement from another run of the agent acknowledges nothing.
	if other := q.Collect(qgaproto.MessagesArgs{After: last, Instance: "another"}); other.Messages[0].Seq != 6 {
		t.Errorf("a foreign acknowledgement dropped messages: first seq %d", other.Messages[0].Seq)
	}
	next := q.Collect(qgaproto.MessagesArgs{After: last, Instance: m.Instance})
	if next.Messages[0].Seq != last+1 || q.Stats().Queued != 1000-qgaproto.MaxMessagesPerCall {
		t.Errorf("after acknowledging %d: first %d, queued %d", last, next.Messages[0].Seq, q.Stats().Queued)
	}
	if end := q.Collect(qgaproto.MessagesArgs{After: 1005, Instance: m.Instance}); len(end.Messages) != 0 || end.More || q.Stats().Queued != 0 {
		t.Errorf("after acknowledging all: %+v", end)
	}
}

func send(t *testing.T, path, req string) map[string]any {
	t.Helper()
	b, err := cmdsock.Send(context.Background(), path, []byte(req))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %q", req, b)
	}
	return v
}

func TestHandlers(t *testing.T) {
	reg := cmdsock.NewRegistry()
	q := NewQueue(0)
	if err := Register(reg, q, "9.9"); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "c.sock")
	srv, err := cmdsock.NewServer(reg, cmdsock.Options{Path: path, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Error(err)
		}
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := cmdsock.Send(ctx, path, []byte(`{"Command":"agent.ping"}`)); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	long := strings.Repeat("x", qgaproto.MaxMessageText+1)
	many := map[string]float64{}
	for i := range qgaproto.MaxMetricFields + 1 {
		many[fmt.Sprint("f", i)] = 1
	}
	manyJSON, _ := json.Marshal(many)
	for _, tc := range []struct {
		req    string
		status float64
		msg    string
	}{
		{`{"Command":"agent.ping"}`, 0, "pong"},
		{`{"Command":"mb.ready"}`, 0, ""},
		{`{"Command":"mb.ready","name":"web","detail":"port 80\u001b[2J"}`, 0, ""},
		{`{"Command":"mb.ready","name":"bad\u0007name"}`, 105, "control characters"},
		{`{"Command":"mb.event","level":"warn","text":"disk 91%"}`, 0, ""},
		{`{"Command":"mb.event","text":"` + long + `"}`, 105, "limit is 4096"},
		{`{"Command":"mb.event","level":"loud","text":"x"}`, 105, `level "loud"`},
		{`{"Command":"mb.event","text":""}`, 105, "text is empty"},
		{`{"Command":"mb.metric","plugin":"queue","fields":{"depth":12,"age_s":3.5}}`, 0, ""},
		{`{"Command":"mb.metric","plugin":"queue","fields":` + string(manyJSON) + `}`, 105, "limit is 256"},
		{`{"Command":"mb.metric","plugin":"queue","fields":{"depth":"twelve"}}`, 105, "object of numbers"},
		{`{"Command":"mb.metric","fields":{"a":1}}`, 105, "plugin is empty"},
	} {
		v := send(t, path, tc.req)
		if v["Status"] != tc.status || !strings.Contains(v["StatusMessage"].(string), tc.msg) {
			t.Errorf("%.60s: %v", tc.req, v)
		}
	}
	info := send(t, path, `{"Command":"mb.info"}`)
	if info["agent_version"] != "9.9" || fmt.Sprint(info["ready"]) != "[default web]" || info["queued"] != 4.0 {
		t.Errorf("mb.info: %v", info)
	}
	m := q.Collect(qgaproto.MessagesArgs{})
	if len(m.Messages) != 4 {
		t.Fatalf("queued %v", m.Messages)
	}
	ev := m.Messages[2]
	if ev.Kind != qgaproto.MessageEvent || ev.Level != "warning" || ev.Text != "disk 91%" {
		t.Errorf("event %+v", ev)
	}
	if d := m.Messages[1].Detail; d != "port 80[2J" {
		t.Errorf("detail not cleaned: %q", d)
	}
	if f := m.Messages[3].Fields; f["depth"] != 12 || f["age_s"] != 3.5 || m.Messages[3].Plugin != "queue" {
		t.Errorf("metric %+v", m.Messages[3])
	}
}

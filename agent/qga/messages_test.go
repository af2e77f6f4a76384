package qga_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/agent"
	"github.com/mbvm/mb/agent/guestmsg"
	"github.com/mbvm/mb/agent/qga"
	"github.com/mbvm/mb/agent/qgaproto"
)

// The Watcher collects what guest programs queued on its pings: events
// and metrics renumbered by the host and cleaned again (the guest is not
// trusted to have done it), and the readiness names in Info.
func TestWatcherCollectsGuestMessages(t *testing.T) {
	q := guestmsg.NewQueue(0)
	srv := agent.NewServer(agent.Options{Logger: quietLogger(), Messages: q})
	path := serveSocket(t, func(ctx context.Context, c net.Conn) { srv.ServeConn(ctx, c) })
	w := qga.NewWatcher(newClient(t, path, 5*time.Second), qga.WatcherOptions{Interval: time.Hour, Logger: quietLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)

	// Pushed straight into the queue, past the handlers' checks, as a
	// hostile guest could.
	q.Push(qgaproto.GuestMessage{Kind: qgaproto.MessageEvent, Level: "shout", Text: "disk\x1b[2J full\n" + strings.Repeat("x", 5000)})
	q.Push(qgaproto.GuestMessage{Kind: qgaproto.MessageReady, Name: "web"})
	fields := map[string]float64{}
	for i := range 300 {
		fields[strings.Repeat("f", i%5+1)+string(rune('a'+i%26))+strings.Repeat("z", i/26)] = float64(i)
	}
	q.Push(qgaproto.GuestMessage{Kind: qgaproto.MessageMetric, Plugin: "q\x07", Fields: fields})

	var msgs []qga.GuestMessage
	var last uint64
	for deadline := time.Now().Add(20 * time.Second); len(msgs) < 3; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("collected %d messages", len(msgs))
		}
		w.PollSoon()
		msgs, last = w.Messages(0)
	}
	ev, rd, mt := msgs[0], msgs[1], msgs[2]
	if ev.Seq != 1 || ev.Kind != "event" || ev.Level != "info" || !strings.HasPrefix(ev.Text, "disk[2J fullxxx") || len(ev.Text) != qgaproto.MaxMessageText {
		t.Errorf("event not cleaned: %+v", ev)
	}
	if rd.Kind != "ready" || rd.Name != "web" {
		t.Errorf("ready %+v", rd)
	}
	if mt.Plugin != "q" || len(mt.Fields) != qgaproto.MaxMetricFields {
		t.Errorf("metric: plugin %q, %d fields", mt.Plugin, len(mt.Fields))
	}
	if last != 3 {
		t.Errorf("last %d", last)
	}
	if after, _ := w.Messages(2); len(after) != 1 || after[0].Seq != 3 {
		t.Errorf("Messages(2) = %+v", after)
	}
	info := w.Info()
	if strings.Join(info.Ready, ",") != "web" || info.MessagesSeq != 3 {
		t.Errorf("info: ready %v, seq %d", info.Ready, info.MessagesSeq)
	}
	// Collected messages are acknowledged: the guest forgets them.
	for deadline := time.Now().Add(20 * time.Second); q.Stats().Queued != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the guest still holds %d messages", q.Stats().Queued)
		}
		w.PollSoon()
	}
}

// An agent without the extension (a stock qemu-ga, or mb-agent without a
// command socket) is watched as before, with nothing collected.
func TestWatcherWithoutMessages(t *testing.T) {
	_, path := startAgent(t)
	w := qga.NewWatcher(newClient(t, path, 5*time.Second), qga.WatcherOptions{Interval: time.Hour, Logger: quietLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	for deadline := time.Now().Add(20 * time.Second); w.Info().Kind == ""; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the agent never answered")
		}
	}
	if msgs, last := w.Messages(0); len(msgs) != 0 || last != 0 || w.Info().Ready != nil {
		t.Errorf("messages %v, last %d", msgs, last)
	}
}

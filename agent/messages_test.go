package agent

import (
	"testing"

	"github.com/mbvm/mb/agent/guestmsg"
	"github.com/mbvm/mb/agent/qgaproto"
)

// The host drains the guest's queue with mb-get-messages, acknowledging
// with After; the command is listed only when the agent has a queue.
func TestMessagesCommand(t *testing.T) {
	var info qgaproto.Info
	startGuest(t).mustCall("guest-info", nil, &info)
	if info.Supports(qgaproto.MessagesCommand) {
		t.Error("an agent without a queue lists mb-get-messages")
	}
	q := guestmsg.NewQueue(0)
	g := startGuestWith(t, Options{Messages: q})
	g.mustCall("guest-info", nil, &info)
	if !info.Supports(qgaproto.MessagesCommand) {
		t.Fatal("mb-get-messages not listed")
	}
	q.Push(qgaproto.GuestMessage{Kind: qgaproto.MessageEvent, Level: "info", Text: "one"})
	q.Push(qgaproto.GuestMessage{Kind: qgaproto.MessageReady, Name: "web"})
	var m qgaproto.Messages
	g.mustCall(qgaproto.MessagesCommand, qgaproto.MessagesArgs{After: 0}, &m)
	if len(m.Messages) != 2 || m.Messages[0].Text != "one" || len(m.Ready) != 1 || m.Ready[0].Name != "web" {
		t.Fatalf("first collect: %+v", m)
	}
	g.mustCall(qgaproto.MessagesCommand, qgaproto.MessagesArgs{After: m.Messages[1].Seq, Instance: m.Instance}, &m)
	if len(m.Messages) != 0 || len(m.Ready) != 1 {
		t.Errorf("after acknowledging: %+v", m)
	}
	if e := g.call(qgaproto.MessagesCommand, map[string]any{"after": 0, "bogus": 1}, &m); e == nil {
		t.Error("an unknown argument was accepted")
	}
}

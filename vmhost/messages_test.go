package vmhost_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mbvm/mb/backend/fake"
	"github.com/mbvm/mb/vmhost"
)

// messenger is a fake VM whose agent collected two guest messages.
type messenger struct {
	*fake.Controller
	polls atomic.Int32
}

func (m *messenger) GuestMessages(after uint64) ([]vmhost.GuestMessage, uint64) {
	all := []vmhost.GuestMessage{
		{Seq: 1, Time: time.Unix(1, 0).UTC(), Kind: "event", Level: "warning", Text: "disk 91%"},
		{Seq: 2, Time: time.Unix(2, 0).UTC(), Kind: "ready", Name: "web"},
	}
	if after >= 2 {
		return nil, 2
	}
	return all[after:], 2
}

func (m *messenger) PollAgent() { m.polls.Add(1) }

func TestMessagesMethodAndAgentPoll(t *testing.T) {
	m := &messenger{Controller: fake.New(fake.Options{Name: "vm1"})}
	h := serve(t, m)
	cl := vmhost.NewClient(h.sock)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := cl.Call(ctx, vmhost.Request{Method: vmhost.MethodMessages, After: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Messages) != 1 || r.Messages[0].Name != "web" || r.MessagesSeq != 2 {
		t.Errorf("messages after 1: %+v, seq %d", r.Messages, r.MessagesSeq)
	}
	if _, err := cl.Call(ctx, vmhost.Request{Method: vmhost.MethodStatus}); err != nil || m.polls.Load() != 0 {
		t.Errorf("a plain status polled the agent (%d) or failed: %v", m.polls.Load(), err)
	}
	if _, err := cl.Call(ctx, vmhost.Request{Method: vmhost.MethodStatus, AgentPoll: true}); err != nil || m.polls.Load() != 1 {
		t.Errorf("status with agent_poll: %d polls, %v", m.polls.Load(), err)
	}
	// A VM whose backend collects nothing says so.
	plain := serve(t, fake.New(fake.Options{Name: "vm2"}))
	if _, err := vmhost.NewClient(plain.sock).Call(ctx, vmhost.Request{Method: vmhost.MethodMessages}); err == nil {
		t.Error("messages on a backend without an agent succeeded")
	}
}

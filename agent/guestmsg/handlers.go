package guestmsg

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"github.com/mbvm/mb/agent/cmdsock"
	"github.com/mbvm/mb/agent/qgaproto"
	"github.com/mbvm/mb/internal/safetext"
)

// The commands Register adds.
const (
	CmdReady  = "mb.ready"
	CmdEvent  = "mb.event"
	CmdMetric = "mb.metric"
	CmdInfo   = "mb.info"
	CmdPing   = "agent.ping"
)

// Levels an mb.event may carry; "warn" is taken for "warning".
var levels = map[string]string{
	"debug": "debug", "info": "info", "notice": "notice", "warning": "warning", "warn": "warning",
	"error": "error", "critical": "critical",
}

// Register adds mb-agent's commands to reg; the message commands push to
// q. version is the agent's, reported by mb.info.
func Register(reg *cmdsock.Registry, q *Queue, version string) error {
	h := &handlers{q: q, version: version}
	for name, fn := range map[string]cmdsock.Handler{
		CmdReady: h.ready, CmdEvent: h.event, CmdMetric: h.metric, CmdInfo: h.info, CmdPing: h.ping,
	} {
		if err := reg.Register(name, fn); err != nil {
			return err
		}
	}
	return nil
}

type handlers struct {
	q       *Queue
	version string
}

func (h *handlers) ping(context.Context, *cmdsock.Request) (cmdsock.Reply, error) {
	return cmdsock.Reply{"StatusMessage": "pong"}, nil
}

// ready records that the guest (or a named service in it) is ready.
func (h *handlers) ready(_ context.Context, req *cmdsock.Request) (cmdsock.Reply, error) {
	var in struct{ Name, Detail string }
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	name := strings.TrimSpace(in.Name)
	if name == "" {
		name = "default"
	}
	if err := checkName("name", name); err != nil {
		return nil, err
	}
	if len(in.Detail) > qgaproto.MaxMessageText {
		return nil, fmt.Errorf("detail is %d bytes; the limit is %d", len(in.Detail), qgaproto.MaxMessageText)
	}
	seq := h.q.Push(qgaproto.GuestMessage{Kind: qgaproto.MessageReady, Name: name,
		Detail: safetext.Clean(in.Detail, qgaproto.MaxMessageText)})
	return cmdsock.Reply{"name": name, "seq": seq}, nil
}

// event queues a message for the host.
func (h *handlers) event(_ context.Context, req *cmdsock.Request) (cmdsock.Reply, error) {
	var in struct{ Level, Text string }
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	level := "info"
	if in.Level != "" {
		var ok bool
		if level, ok = levels[strings.ToLower(in.Level)]; !ok {
			return nil, fmt.Errorf("level %q: use debug, info, notice, warning, error or critical", in.Level)
		}
	}
	if strings.TrimSpace(in.Text) == "" {
		return nil, errors.New("text is empty: an event needs a text")
	}
	if len(in.Text) > qgaproto.MaxMessageText {
		return nil, fmt.Errorf("text is %d bytes; the limit is %d", len(in.Text), qgaproto.MaxMessageText)
	}
	seq := h.q.Push(qgaproto.GuestMessage{Kind: qgaproto.MessageEvent, Level: level,
		Text: safetext.Clean(in.Text, qgaproto.MaxMessageText)})
	return cmdsock.Reply{"seq": seq}, nil
}

// metric queues a set of numeric fields under a plugin name.
func (h *handlers) metric(_ context.Context, req *cmdsock.Request) (cmdsock.Reply, error) {
	var in struct {
		Plugin string
		Fields map[string]float64
	}
	if err := req.Decode(&in); err != nil {
		return nil, fmt.Errorf("%w (fields must be an object of numbers)", err)
	}
	if err := checkName("plugin", in.Plugin); err != nil {
		return nil, err
	}
	if len(in.Fields) == 0 {
		return nil, errors.New("fields is empty: send at least one numeric field")
	}
	if len(in.Fields) > qgaproto.MaxMetricFields {
		return nil, fmt.Errorf("%d fields; the limit is %d per metric set", len(in.Fields), qgaproto.MaxMetricFields)
	}
	for k, v := range in.Fields {
		if err := checkName("field name", k); err != nil {
			return nil, err
		}
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return nil, fmt.Errorf("field %q is not a finite number", k)
		}
	}
	seq := h.q.Push(qgaproto.GuestMessage{Kind: qgaproto.MessageMetric, Plugin: in.Plugin, Fields: in.Fields})
	return cmdsock.Reply{"seq": seq}, nil
}

// info tells the guest what the agent knows: the VM's name (its host
// name), the agent's version, and the host's side as far as the agent sees
// it.
func (h *handlers) info(context.Context, *cmdsock.Request) (cmdsock.Reply, error) {
	host, _ := os.Hostname()
	st := h.q.Stats()
	hostView := map[string]any{"collecting": !st.LastCollect.IsZero()}
	if !st.LastCollect.IsZero() {
		hostView["last_collect"] = st.LastCollect.UTC().Format(time.RFC3339)
	}
	ready := []string{}
	for _, r := range h.q.Ready() {
		ready = append(ready, r.Name)
	}
	return cmdsock.Reply{
		"vm":            host,
		"agent_version": h.version,
		"host":          hostView,
		"queued":        st.Queued,
		"dropped":       st.Dropped,
		"ready":         ready,
	}, nil
}

// checkName accepts short printable names.
func checkName(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s is empty", what)
	case len(s) > qgaproto.MaxNameLen:
		return fmt.Errorf("%s is %d bytes; the limit is %d", what, len(s), qgaproto.MaxNameLen)
	case safetext.Clean(s, len(s)) != s:
		return fmt.Errorf("%s %q holds control characters or invalid UTF-8", what, s)
	}
	return nil
}

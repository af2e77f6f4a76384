package service

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/mbvm/mb/monitor"
	"github.com/mbvm/mb/monitor/alert"
	"github.com/mbvm/mb/monitor/notify"
	"github.com/mbvm/mb/monitor/store"
)

// outbox adapts the SQLite store to notify.Outbox and notify.AlertLog: an
// item's ID is its row id in decimal.
type outbox struct {
	st    *store.Store
	clock func() time.Time
}

var (
	_ notify.Outbox   = (*outbox)(nil)
	_ notify.AlertLog = (*outbox)(nil)
)

func (o *outbox) Enqueue(ctx context.Context, m notify.Message, channel string) error {
	_, err := o.st.Enqueue(ctx, toNotification(m), channel, o.clock())
	return err
}

func (o *outbox) Due(ctx context.Context, now time.Time, limit int) ([]notify.Item, error) {
	rows, err := o.st.Due(ctx, now, limit)
	if err != nil {
		return nil, err
	}
	out := make([]notify.Item, len(rows))
	for i, r := range rows {
		out[i] = toItem(r)
	}
	return out, nil
}

func (o *outbox) MarkSent(ctx context.Context, id string) error {
	n, err := rowID(id)
	if err != nil {
		return err
	}
	return o.st.MarkSent(ctx, n, o.clock())
}

func (o *outbox) Reschedule(ctx context.Context, id string, next time.Time, lastErr string) error {
	n, err := rowID(id)
	if err != nil {
		return err
	}
	return o.st.Reschedule(ctx, n, next, lastErr)
}

func (o *outbox) MarkFailed(ctx context.Context, id string, lastErr string) error {
	n, err := rowID(id)
	if err != nil {
		return err
	}
	return o.st.GiveUp(ctx, n, o.clock(), lastErr)
}

func (o *outbox) Alerted(ctx context.Context, k notify.AlertKey, channels []string) error {
	return o.st.AddAlertChannels(ctx, alert.Key(k), channels)
}

func (o *outbox) Recovered(ctx context.Context, k notify.AlertKey) ([]string, error) {
	return o.st.TakeAlertChannels(ctx, alert.Key(k))
}

func rowID(id string) (int64, error) {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("outbox item id %q is not a row id", id)
	}
	return n, nil
}

func toItem(r store.OutboxItem) notify.Item {
	return notify.Item{
		ID: strconv.FormatInt(r.ID, 10), Channel: r.Channel, Message: toMessage(r.Notification),
		State: notify.ItemState(r.Status), Enqueued: r.Created, Attempts: r.Attempts,
		NextAttempt: r.NextAttempt, LastError: r.LastError,
	}
}

// toMessage converts an engine notification to the notify package's
// message.
func toMessage(n monitor.Notification) notify.Message {
	return notify.Message{
		ID: n.ID, Time: n.Time, Host: n.Host, Plugin: n.Plugin, Field: n.Field,
		Level: notify.Level(n.Level), Previous: notify.Level(n.Previous),
		Value: n.Value, Text: n.Text, Recovery: n.Recovery, Recipients: n.Recipients,
	}
}

// toNotification is the inverse of toMessage (a test message never goes
// through the outbox).
func toNotification(m notify.Message) monitor.Notification {
	return monitor.Notification{
		ID: m.ID, Time: m.Time, Host: m.Host, Plugin: m.Plugin, Field: m.Field,
		Level: string(m.Level), Previous: string(m.Previous),
		Value: m.Value, Text: m.Text, Recovery: m.Recovery, Recipients: m.Recipients,
	}
}

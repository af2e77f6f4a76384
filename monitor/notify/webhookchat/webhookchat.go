// Package webhookchat sends notifications to a chat service's incoming
// webhook: a JSON POST of {"text": ...} (and an optional "channel") to
// the webhook's URL. Slack and Mattermost take the same request; their
// packages give it their type name.
package webhookchat

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/mbvm/mb/monitor/notify"
)

// Config is a webhook channel's settings.
type Config struct {
	// WebhookURL is the incoming webhook; the URL itself is the
	// credential.
	WebhookURL notify.Secret
	// Channel overrides the webhook's channel when the webhook allows it.
	Channel string
}

// Channel is a configured webhook channel of one chat service.
type Channel struct {
	kind   string
	name   string
	cfg    Config
	client *http.Client
}

// New returns a channel of type kind ("slack", "mattermost").
func New(kind, name string, cfg Config) *Channel {
	return &Channel{kind: kind, name: name, cfg: cfg, client: &http.Client{}}
}

// Parser reads entries of type kind: webhook_url (or webhook_url_file),
// channel.
func Parser(kind string) notify.Factory {
	return func(name string, f *notify.Fields) (notify.Channel, error) {
		return New(kind, name, Config{
			WebhookURL: f.SecretURL("webhook_url", notify.Required),
			Channel:    f.String("channel", notify.Optional),
		}), nil
	}
}

// Name implements notify.Channel.
func (c *Channel) Name() string { return c.name }

// Type implements notify.Channel.
func (c *Channel) Type() string { return c.kind }

// String names the channel without its configuration.
func (c *Channel) String() string { return c.kind + " channel " + c.name }

// Redacted implements notify.Redactor.
func (c *Channel) Redacted() map[string]any {
	return map[string]any{"webhook_url": notify.RedactURL(c.cfg.WebhookURL.Reveal()), "channel": c.cfg.Channel}
}

type payload struct {
	Text    string `json:"text"`
	Channel string `json:"channel,omitempty"`
}

// Send implements notify.Channel.
func (c *Channel) Send(ctx context.Context, m notify.Message) error {
	body, err := json.Marshal(payload{Text: m.Plain(), Channel: c.cfg.Channel})
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPost, c.cfg.WebhookURL.Reveal(), bytes.NewReader(body))
	if err != nil {
		return notify.Permanent(fmt.Errorf("%s: bad webhook_url", c.kind))
	}
	req.Header.Set("Content-Type", "application/json")
	if _, err := notify.DoHTTP(ctx, c.client, req, c.cfg.WebhookURL); err != nil {
		return fmt.Errorf("%s: %w", c.kind, err)
	}
	return nil
}

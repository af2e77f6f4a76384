// Package slack sends notifications to a Slack incoming webhook: a JSON
// POST of {"text": ...} to the webhook's URL.
package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/mbvm/mb/monitor/notify"
)

// Type is the `type:` value of this channel.
const Type = "slack"

// Config is a slack channel's settings.
type Config struct {
	// WebhookURL is the incoming webhook (https://hooks.slack.com/...);
	// the URL itself is the credential.
	WebhookURL notify.Secret
	// Channel overrides the webhook's channel when the webhook allows it.
	Channel string
}

// Channel is a configured slack channel.
type Channel struct {
	name   string
	cfg    Config
	client *http.Client
}

// New returns a slack channel.
func New(name string, cfg Config) *Channel {
	return &Channel{name: name, cfg: cfg, client: &http.Client{}}
}

// Parse reads a slack entry: webhook_url (or webhook_url_file), channel.
func Parse(name string, f *notify.Fields) (notify.Channel, error) {
	return New(name, Config{
		WebhookURL: f.SecretURL("webhook_url", notify.Required),
		Channel:    f.String("channel", notify.Optional),
	}), nil
}

// Name implements notify.Channel.
func (c *Channel) Name() string { return c.name }

// Type implements notify.Channel.
func (c *Channel) Type() string { return Type }

// String names the channel without its configuration.
func (c *Channel) String() string { return Type + " channel " + c.name }

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
		return notify.Permanent(fmt.Errorf("slack: bad webhook_url"))
	}
	req.Header.Set("Content-Type", "application/json")
	if _, err := notify.DoHTTP(ctx, c.client, req, c.cfg.WebhookURL); err != nil {
		return fmt.Errorf("slack: %w", err)
	}
	return nil
}

// Package signal sends notifications through Signal by way of a
// signal-cli REST API server (github.com/bbernhard/signal-cli-rest-api),
// which holds the registered sender number: a JSON POST to its /v2/send
// with the message, the sender's number and the recipients.
package signal

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/mbvm/mb/monitor/notify"
)

// Type is the `type:` value of this channel.
const Type = "signal"

// Config is a signal channel's settings (hbd's names: phone_number,
// recipient).
type Config struct {
	// URL is the signal-cli REST API server's base URL, for example
	// http://127.0.0.1:8080.
	URL string
	// Number is the registered sender, in international form (+4412345).
	Number string
	// Recipients are phone numbers or group IDs.
	Recipients []string
}

// Channel is a configured signal channel.
type Channel struct {
	name   string
	cfg    Config
	client *http.Client
}

// New returns a signal channel.
func New(name string, cfg Config) *Channel {
	cfg.URL = strings.TrimRight(cfg.URL, "/")
	return &Channel{name: name, cfg: cfg, client: &http.Client{}}
}

// Parse reads a signal entry: url, phone_number (or number), recipient or
// recipients (one or a list).
func Parse(name string, f *notify.Fields) (notify.Channel, error) {
	return New(name, Config{
		URL:        f.URL("url", notify.Required),
		Number:     f.String("phone_number|number", notify.Required),
		Recipients: f.Strings("recipients|recipient", notify.Required),
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
	return map[string]any{"url": notify.PublicURL(c.cfg.URL), "phone_number": c.cfg.Number, "recipients": c.cfg.Recipients}
}

type sendRequest struct {
	Message    string   `json:"message"`
	Number     string   `json:"number"`
	Recipients []string `json:"recipients"`
}

// Send implements notify.Channel.
func (c *Channel) Send(ctx context.Context, m notify.Message) error {
	body, err := json.Marshal(sendRequest{Message: m.Plain(), Number: c.cfg.Number, Recipients: c.cfg.Recipients})
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPost, c.cfg.URL+"/v2/send", bytes.NewReader(body))
	if err != nil {
		return notify.Permanent(fmt.Errorf("signal: bad url"))
	}
	req.Header.Set("Content-Type", "application/json")
	if _, err := notify.DoHTTP(ctx, c.client, req); err != nil {
		return fmt.Errorf("signal: %w", err)
	}
	return nil
}

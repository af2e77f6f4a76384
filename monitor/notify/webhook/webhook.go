// Package webhook POSTs every notification as JSON to a URL. With an
// hmac_key, each request carries X-MB-Signature: sha256=HEX, the
// HMAC-SHA256 of the exact body under that key, so the receiver can check
// that mb sent it. X-MB-Message-ID repeats the message ID, which stays the
// same across retries, so a receiver can drop duplicates.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/mbvm/mb/monitor/notify"
)

// Type is the `type:` value of this channel.
const Type = "webhook"

// Header names of the requests.
const (
	SignatureHeader = "X-MB-Signature"
	MessageIDHeader = "X-MB-Message-ID"
)

// Config is a webhook channel's settings.
type Config struct {
	URL     string
	HMACKey notify.Secret // optional
}

// Payload is the JSON body of every request; its field names are a stable
// interface.
type Payload struct {
	ID       string    `json:"id"`
	Time     time.Time `json:"time"`
	Host     string    `json:"host"`
	Plugin   string    `json:"plugin,omitempty"`
	Field    string    `json:"field,omitempty"`
	Level    string    `json:"level"`
	Previous string    `json:"previous,omitempty"`
	Value    string    `json:"value,omitempty"`
	Text     string    `json:"text"`
	Subject  string    `json:"subject"`
	Recovery bool      `json:"recovery"`
	Test     bool      `json:"test"`
}

// NewPayload is the body sent for m.
func NewPayload(m notify.Message) Payload {
	return Payload{
		ID: m.ID, Time: m.Time.UTC(), Host: m.Host, Plugin: m.Plugin, Field: m.Field,
		Level: string(m.Level), Previous: string(m.Previous), Value: m.Value,
		Text: m.Body(), Subject: m.Subject(), Recovery: m.IsRecovery(), Test: m.Test,
	}
}

// Sign returns the signature header's value for body under key.
func Sign(key, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Channel is a configured webhook channel.
type Channel struct {
	name   string
	cfg    Config
	client *http.Client
}

// New returns a webhook channel.
func New(name string, cfg Config) *Channel {
	return &Channel{name: name, cfg: cfg, client: &http.Client{}}
}

// Parse reads a webhook entry: url, hmac_key (or hmac_key_file).
func Parse(name string, f *notify.Fields) (notify.Channel, error) {
	return New(name, Config{URL: f.URL("url", notify.Required), HMACKey: f.Secret("hmac_key", notify.Optional)}), nil
}

// Name implements notify.Channel.
func (c *Channel) Name() string { return c.name }

// Type implements notify.Channel.
func (c *Channel) Type() string { return Type }

// String names the channel without its configuration.
func (c *Channel) String() string { return Type + " channel " + c.name }

// Redacted implements notify.Redactor. The URL loses its user information
// and query, which may carry a token.
func (c *Channel) Redacted() map[string]any {
	return map[string]any{"url": notify.PublicURL(c.cfg.URL), "hmac_key": c.cfg.HMACKey.String()}
}

// Send implements notify.Channel.
func (c *Channel) Send(ctx context.Context, m notify.Message) error {
	body, err := json.Marshal(NewPayload(m))
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPost, c.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return notify.Permanent(fmt.Errorf("webhook: bad url"))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(MessageIDHeader, m.ID)
	if c.cfg.HMACKey.IsSet() {
		req.Header.Set(SignatureHeader, Sign([]byte(c.cfg.HMACKey.Reveal()), body))
	}
	if _, err := notify.DoHTTP(ctx, c.client, req, c.cfg.HMACKey); err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	return nil
}

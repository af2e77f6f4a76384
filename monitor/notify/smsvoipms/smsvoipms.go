// Package smsvoipms sends notifications as SMS through voip.ms's REST API:
// a GET of https://voip.ms/api/v1/rest.php with api_username,
// api_password, method=sendSMS, did (the sending number), dst and message.
// An SMS carries at most 160 characters; longer text is cut.
package smsvoipms

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/mbvm/mb/monitor/notify"
)

// Type is the `type:` value of this channel.
const Type = "sms_voipms"

// DefaultAPI is voip.ms's REST endpoint.
const DefaultAPI = "https://voip.ms/api/v1/rest.php"

// maxSMS is voip.ms's limit for one message.
const maxSMS = 160

// Config is an sms_voipms channel's settings.
type Config struct {
	Username string        // the account's e-mail address (api_username)
	Password notify.Secret // the API password (api_password; hbd calls it api_key)
	DID      string        // the SMS-enabled number sending it
	Dst      string        // the number receiving it (hbd's recipient)
	API      string        // the endpoint; DefaultAPI unless testing
}

// Channel is a configured sms_voipms channel.
type Channel struct {
	name   string
	cfg    Config
	client *http.Client
}

// New returns an sms_voipms channel.
func New(name string, cfg Config) *Channel {
	if cfg.API == "" {
		cfg.API = DefaultAPI
	}
	return &Channel{name: name, cfg: cfg, client: &http.Client{}}
}

// Parse reads an sms_voipms entry: api_username, api_password (or hbd's
// api_key, each also as *_file), did, dst (or hbd's recipient), api_url.
func Parse(name string, f *notify.Fields) (notify.Channel, error) {
	return New(name, Config{
		Username: f.String("api_username", notify.Required),
		Password: f.Secret("api_password|api_key", notify.Required),
		DID:      f.String("did", notify.Required),
		Dst:      f.String("dst|recipient", notify.Required),
		API:      f.URL("api_url", notify.Optional),
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
	return map[string]any{"api_username": c.cfg.Username, "api_password": c.cfg.Password.String(), "did": c.cfg.DID, "dst": c.cfg.Dst, "api_url": c.cfg.API}
}

// Text is the SMS for m: subject and body on one line, at most 160
// characters.
func Text(m notify.Message) string {
	s := strings.TrimPrefix(m.Subject(), "[mb] ") + ": " + m.Body()
	r := []rune(s)
	if len(r) > maxSMS {
		return string(r[:maxSMS-3]) + "..."
	}
	return s
}

// Send implements notify.Channel.
func (c *Channel) Send(ctx context.Context, m notify.Message) error {
	q := url.Values{
		"api_username": {c.cfg.Username},
		"api_password": {c.cfg.Password.Reveal()},
		"method":       {"sendSMS"},
		"did":          {c.cfg.DID},
		"dst":          {c.cfg.Dst},
		"message":      {Text(m)},
	}
	req, err := http.NewRequest(http.MethodGet, c.cfg.API+"?"+q.Encode(), nil)
	if err != nil {
		return notify.Permanent(fmt.Errorf("sms_voipms: bad api_url"))
	}
	body, err := notify.DoHTTP(ctx, c.client, req, c.cfg.Password)
	if err != nil {
		return fmt.Errorf("sms_voipms: %w", err)
	}
	var ans struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return fmt.Errorf("sms_voipms: the answer is not JSON: %v", err)
	}
	if ans.Status == "success" {
		return nil
	}
	err = fmt.Errorf("sms_voipms: voip.ms answered status %q", notify.Scrub(ans.Status, c.cfg.Password))
	if permanent(ans.Status) {
		return notify.Permanent(err)
	}
	return err
}

// permanent reports whether a voip.ms status names a problem with the
// request or the account that retrying will not fix.
func permanent(status string) bool {
	for _, p := range []string{"invalid_", "missing_", "ip_not_enabled", "no_api", "sms_toolong", "api_not_enabled"} {
		if strings.HasPrefix(status, p) {
			return true
		}
	}
	return false
}

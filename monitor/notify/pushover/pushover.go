// Package pushover sends notifications through Pushover's message API: a
// form POST to https://api.pushover.net/1/messages.json with the
// application token, the user key, the message, a title, a priority and a
// timestamp.
package pushover

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mbvm/mb/monitor/notify"
)

// Type is the `type:` value of this channel.
const Type = "pushover"

// DefaultAPI is Pushover's message endpoint.
const DefaultAPI = "https://api.pushover.net/1/messages.json"

// Pushover's documented limits, in characters.
const (
	maxMessage = 1024
	maxTitle   = 250
)

// Config is a pushover channel's settings (hbd's names: token, user).
type Config struct {
	Token  notify.Secret // the application's API token
	User   notify.Secret // the user or group key
	Device string        // optional: one device of the user
	Sound  string        // optional
	API    string        // the endpoint; DefaultAPI unless testing
}

// Channel is a configured pushover channel.
type Channel struct {
	name   string
	cfg    Config
	client *http.Client
}

// New returns a pushover channel.
func New(name string, cfg Config) *Channel {
	if cfg.API == "" {
		cfg.API = DefaultAPI
	}
	return &Channel{name: name, cfg: cfg, client: &http.Client{}}
}

// Parse reads a pushover entry: token, user (each also as *_file), device,
// sound, api_url.
func Parse(name string, f *notify.Fields) (notify.Channel, error) {
	return New(name, Config{
		Token:  f.Secret("token", notify.Required),
		User:   f.Secret("user", notify.Required),
		Device: f.String("device", notify.Optional),
		Sound:  f.String("sound", notify.Optional),
		API:    f.URL("api_url", notify.Optional),
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
	return map[string]any{"token": c.cfg.Token.String(), "user": c.cfg.User.String(), "device": c.cfg.Device, "sound": c.cfg.Sound, "api_url": c.cfg.API}
}

// Priority is the Pushover priority for m: 1 (high, bypassing quiet
// hours) for CRITICAL, -1 (quiet) for a recovery, 0 otherwise.
func Priority(m notify.Message) int {
	switch {
	case m.Test:
		return 0
	case m.IsRecovery():
		return -1
	case m.Level == notify.Critical:
		return 1
	}
	return 0
}

// Send implements notify.Channel.
func (c *Channel) Send(ctx context.Context, m notify.Message) error {
	form := url.Values{
		"token":    {c.cfg.Token.Reveal()},
		"user":     {c.cfg.User.Reveal()},
		"message":  {truncate(m.Body(), maxMessage)},
		"title":    {truncate(m.Subject(), maxTitle)},
		"priority": {strconv.Itoa(Priority(m))},
	}
	if !m.Time.IsZero() {
		form.Set("timestamp", strconv.FormatInt(m.Time.Unix(), 10))
	}
	if c.cfg.Device != "" {
		form.Set("device", c.cfg.Device)
	}
	if c.cfg.Sound != "" {
		form.Set("sound", c.cfg.Sound)
	}
	req, err := http.NewRequest(http.MethodPost, c.cfg.API, strings.NewReader(form.Encode()))
	if err != nil {
		return notify.Permanent(fmt.Errorf("pushover: bad api_url"))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	body, err := notify.DoHTTP(ctx, c.client, req, c.cfg.Token, c.cfg.User)
	if err != nil {
		return fmt.Errorf("pushover: %w", err)
	}
	var ans struct {
		Status int      `json:"status"`
		Errors []string `json:"errors"`
	}
	if err := json.Unmarshal(body, &ans); err != nil || ans.Status != 1 {
		return notify.Permanent(fmt.Errorf("pushover: the API did not accept the message: %s", notify.Scrub(strings.Join(ans.Errors, "; "), c.cfg.Token, c.cfg.User)))
	}
	return nil
}

// truncate shortens s to at most n characters, marking the cut.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

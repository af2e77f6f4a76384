// Package alertmanager hands notifications to Prometheus's Alertmanager, so
// a team that already routes its alerts there receives mb's the same way:
// a JSON POST to /api/v2/alerts of every configured Alertmanager.
//
// Each alert has the labels alertname (plugin.field), host, plugin, field
// and severity (warning, critical or unknown), and the annotations
// summary, description and value. A firing alert carries endsAt =
// time + ends_after (default 2 h), so Alertmanager keeps it firing while
// mb re-notifies (set ends_after above threshold_renotify_interval) and
// resolves it by itself if mb stops. A recovery sends the alert with
// endsAt = the recovery time. Because severity is a label, a message also
// resolves the same alert at the other severities, so an escalation from
// warning to critical leaves one alert firing, not two.
package alertmanager

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/mbvm/mb/monitor/notify"
)

// Type is the `type:` value of this channel.
const Type = "alertmanager"

// DefaultEndsAfter is how long a firing alert lasts in Alertmanager
// unless mb sends it again.
const DefaultEndsAfter = 2 * time.Hour

// severities are the severity label's values.
var severities = []string{"warning", "critical", "unknown"}

// Config is an alertmanager channel's settings.
type Config struct {
	URLs      []string      // Alertmanager base URLs (http://am:9093)
	Username  string        // optional basic auth
	Password  notify.Secret // optional basic auth
	EndsAfter time.Duration // a firing alert's lifetime; DefaultEndsAfter if 0
}

// Channel is a configured alertmanager channel.
type Channel struct {
	name   string
	cfg    Config
	client *http.Client
}

// New returns an alertmanager channel.
func New(name string, cfg Config) *Channel {
	urls := make([]string, len(cfg.URLs))
	for i, u := range cfg.URLs {
		urls[i] = strings.TrimRight(u, "/")
	}
	cfg.URLs = urls
	if cfg.EndsAfter <= 0 {
		cfg.EndsAfter = DefaultEndsAfter
	}
	return &Channel{name: name, cfg: cfg, client: &http.Client{}}
}

// Parse reads an alertmanager entry: url or urls (one or a list),
// username and password (or password_file) for basic auth, ends_after.
func Parse(name string, f *notify.Fields) (notify.Channel, error) {
	cfg := Config{
		URLs:      f.Strings("urls|url", notify.Required),
		Username:  f.String("username", notify.Optional),
		Password:  f.Secret("password", notify.Optional),
		EndsAfter: f.Duration("ends_after", DefaultEndsAfter),
	}
	for _, u := range cfg.URLs {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			f.Fail("urls", "%q is not an http:// or https:// URL", notify.PublicURL(u))
		}
	}
	if cfg.Password.IsSet() && cfg.Username == "" {
		f.Fail("username", "missing; basic auth with a password needs the username")
	}
	return New(name, cfg), nil
}

// Name implements notify.Channel.
func (c *Channel) Name() string { return c.name }

// Type implements notify.Channel.
func (c *Channel) Type() string { return Type }

// String names the channel without its configuration.
func (c *Channel) String() string { return Type + " channel " + c.name }

// Redacted implements notify.Redactor.
func (c *Channel) Redacted() map[string]any {
	urls := make([]string, len(c.cfg.URLs))
	for i, u := range c.cfg.URLs {
		urls[i] = notify.PublicURL(u)
	}
	return map[string]any{"urls": urls, "username": c.cfg.Username, "password": c.cfg.Password.String(), "ends_after": c.cfg.EndsAfter.String()}
}

// Alert is one entry of the POST /api/v2/alerts body.
type Alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations,omitempty"`
	StartsAt    *time.Time        `json:"startsAt,omitempty"`
	EndsAt      *time.Time        `json:"endsAt,omitempty"`
}

// Alerts is the body sent for m.
func (c *Channel) Alerts(m notify.Message) []Alert {
	at := m.Time.UTC()
	if at.IsZero() {
		at = time.Now().UTC()
	}
	name := m.Field
	if m.Plugin != "" && m.Field != "" {
		name = m.Plugin + "." + m.Field
	} else if m.Plugin != "" {
		name = m.Plugin
	}
	if m.Test {
		name = "mb_notification_test"
	}
	labels := func(sev string) map[string]string {
		l := map[string]string{"alertname": name, "severity": sev}
		for k, v := range map[string]string{"host": m.Host, "plugin": m.Plugin, "field": m.Field} {
			if v != "" {
				l[k] = v
			}
		}
		return l
	}
	ann := map[string]string{"summary": m.Subject(), "description": m.Body()}
	if m.Value != "" {
		ann["value"] = m.Value
	}
	current := strings.ToLower(string(m.Level))
	if m.IsRecovery() {
		current = ""
	}
	var out []Alert
	for _, sev := range severities {
		if sev == current {
			ends := at.Add(c.cfg.EndsAfter)
			if m.Test {
				ends = at.Add(5 * time.Minute)
			}
			out = append(out, Alert{Labels: labels(sev), Annotations: ann, StartsAt: &at, EndsAt: &ends})
		} else if !m.Test {
			out = append(out, Alert{Labels: labels(sev), Annotations: ann, EndsAt: &at})
		}
	}
	return out
}

// Send implements notify.Channel. It posts to every Alertmanager and
// succeeds when at least one accepted the alerts (as Prometheus does);
// when all fail, the error is permanent only if every failure was.
func (c *Channel) Send(ctx context.Context, m notify.Message) error {
	body, err := json.Marshal(c.Alerts(m))
	if err != nil {
		return err
	}
	var errs []error
	permanent := true
	for _, u := range c.cfg.URLs {
		req, err := http.NewRequest(http.MethodPost, u+"/api/v2/alerts", bytes.NewReader(body))
		if err != nil {
			errs = append(errs, notify.Permanent(fmt.Errorf("bad url %s", notify.PublicURL(u))))
			continue
		}
		req.Header.Set("Content-Type", "application/json")
		if c.cfg.Username != "" {
			req.SetBasicAuth(c.cfg.Username, c.cfg.Password.Reveal())
		}
		_, err = notify.DoHTTP(ctx, c.client, req, c.cfg.Password)
		if err == nil {
			return nil
		}
		permanent = permanent && notify.IsPermanent(err)
		errs = append(errs, err)
	}
	err = fmt.Errorf("alertmanager: no Alertmanager took the alert: %w", errors.Join(errs...))
	if permanent {
		return notify.Permanent(err)
	}
	return err
}

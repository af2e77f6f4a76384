// Package slack sends notifications to a Slack incoming webhook (webhook_url,
// https://hooks.slack.com/...): a JSON POST of {"text": ...}, through package webhookchat.
package slack

import (
	"github.com/mbvm/mb/monitor/notify"
	"github.com/mbvm/mb/monitor/notify/webhookchat"
)

// Type is the `type:` value of this channel.
const Type = "slack"

// Config is a slack channel's settings.
type Config = webhookchat.Config

// New returns a slack channel.
func New(name string, cfg Config) *webhookchat.Channel { return webhookchat.New(Type, name, cfg) }

// Parse reads a slack entry: webhook_url (or webhook_url_file), channel.
func Parse(name string, f *notify.Fields) (notify.Channel, error) {
	return webhookchat.Parser(Type)(name, f)
}

// Package mattermost sends notifications to a Mattermost incoming webhook (webhook_url,
// https://mattermost.example.com/hooks/KEY): a JSON POST of {"text": ...}, through package webhookchat.
package mattermost

import (
	"github.com/mbvm/mb/monitor/notify"
	"github.com/mbvm/mb/monitor/notify/webhookchat"
)

// Type is the `type:` value of this channel.
const Type = "mattermost"

// Config is a mattermost channel's settings.
type Config = webhookchat.Config

// New returns a mattermost channel.
func New(name string, cfg Config) *webhookchat.Channel { return webhookchat.New(Type, name, cfg) }

// Parse reads a mattermost entry: webhook_url (or webhook_url_file), channel.
func Parse(name string, f *notify.Fields) (notify.Channel, error) {
	return webhookchat.Parser(Type)(name, f)
}

// Package channels lists the built-in notification channel types, for
// notify.ParseChannels. It is the one place that imports every channel
// package; the monitor passes Builtin() when it reads monitor.yaml.
package channels

import (
	"go.yaml.in/yaml/v3"

	"github.com/mbvm/mb/monitor/notify"
	"github.com/mbvm/mb/monitor/notify/alertmanager"
	"github.com/mbvm/mb/monitor/notify/email"
	"github.com/mbvm/mb/monitor/notify/matrix"
	"github.com/mbvm/mb/monitor/notify/mattermost"
	"github.com/mbvm/mb/monitor/notify/pushover"
	"github.com/mbvm/mb/monitor/notify/signal"
	"github.com/mbvm/mb/monitor/notify/slack"
	"github.com/mbvm/mb/monitor/notify/smsvoipms"
	"github.com/mbvm/mb/monitor/notify/webhook"
)

// Builtin returns a new map of every channel type mb knows.
func Builtin() notify.Types {
	return notify.Types{
		email.Type:        email.Parse,
		pushover.Type:     pushover.Parse,
		mattermost.Type:   mattermost.Parse,
		matrix.Type:       matrix.Parse,
		signal.Type:       signal.Parse,
		smsvoipms.Type:    smsvoipms.Parse,
		webhook.Type:      webhook.Parse,
		slack.Type:        slack.Parse,
		alertmanager.Type: alertmanager.Parse,
	}
}

// Parse is notify.ParseChannels with the built-in types; dir is where
// relative *_file paths start (the configuration file's directory).
func Parse(node *yaml.Node, dir string) (map[string]notify.Configured, error) {
	return notify.ParseChannels(node, notify.Options{Types: Builtin(), Dir: dir})
}

package channels_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mbvm/mb/monitor/notify"
	"github.com/mbvm/mb/monitor/notify/channels"
)

// config has one channel of every type, every secret marked SECRETn, and
// every endpoint a closed port, so each send fails.
const config = `
pushover_ops:          # hbd's own example
  type: pushover
  token: SECRET1
  user: SECRET2
  api_url: http://127.0.0.1:1/1/messages.json
email_ops:             # hbd's own example, no sender: the user is one
  type: email
  smtp_server: 127.0.0.1
  port: 1
  tls: none
  user: alerts@example.com
  password: SECRET3
  recipients: [ops@example.com]
  min_level: CRITICAL
mm:
  type: mattermost
  webhook_url: http://127.0.0.1:1/hooks/SECRET4
  channel: town-square
mx:
  type: matrix
  homeserver: http://127.0.0.1:1
  user: mb
  password_file: mxpass
  room_id: '!room:example.org'
sig:
  type: signal
  url: http://127.0.0.1:1
  phone_number: '+15550001'
  recipient: '+15550002'
sms:
  type: sms_voipms
  api_username: me@example.com
  api_key: SECRET6
  did: '5550003'
  recipient: '5550004'
  api_url: http://127.0.0.1:1/api/v1/rest.php
hook:
  type: webhook
  url: http://127.0.0.1:1/hook?token=SECRET7
  hmac_key: SECRET8
sl:
  type: slack
  webhook_url: http://127.0.0.1:1/services/SECRET9
am:
  type: alertmanager
  urls: [http://127.0.0.1:1]
  username: mb
  password: SECRETA
`

var secrets = []string{"SECRET1", "SECRET2", "SECRET3", "SECRET4", "SECRET5", "SECRET6", "SECRET7", "SECRET8", "SECRET9", "SECRETA"}

func parseAll(t *testing.T) map[string]notify.Configured {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mxpass"), []byte("SECRET5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(config), &doc); err != nil {
		t.Fatal(err)
	}
	chans, err := channels.Parse(&doc, dir)
	if err != nil {
		t.Fatal(err)
	}
	return chans
}

func assertNoSecret(t *testing.T, what, s string) {
	t.Helper()
	for _, v := range secrets {
		if strings.Contains(s, v) {
			t.Fatalf("%s shows %s:\n%s", what, v, s)
		}
	}
}

func TestEveryTypeParsesWithHbdNames(t *testing.T) {
	chans := parseAll(t)
	var names []string
	for n, c := range chans {
		names = append(names, n+"="+c.Channel.Type())
	}
	sort.Strings(names)
	if got := strings.Join(names, " "); got != "am=alertmanager email_ops=email hook=webhook mm=mattermost mx=matrix pushover_ops=pushover sig=signal sl=slack sms=sms_voipms" {
		t.Fatal(got)
	}
	if chans["email_ops"].MinLevel != notify.Critical || chans["email_ops"].Redacted()["sender"] != "alerts@example.com" {
		t.Fatalf("%v", chans["email_ops"].Redacted())
	}
}

func TestUnknownTypeListsEveryType(t *testing.T) {
	var doc yaml.Node
	_ = yaml.Unmarshal([]byte("x:\n  type: telegram\n"), &doc)
	_, err := channels.Parse(&doc, "")
	want := `line 2: notification channel "x": type: unknown channel type "telegram"; accepted: alertmanager, email, matrix, mattermost, pushover, signal, slack, sms_voipms, webhook`
	if err == nil || err.Error() != want {
		t.Fatalf("%v\nwant %s", err, want)
	}
}

// TestSecretsNeverShow sends through every channel to dead endpoints and
// checks the secrets appear in no error, no log line, no redacted view
// and no printed form of a channel.
func TestSecretsNeverShow(t *testing.T) {
	chans := parseAll(t)
	for n, c := range chans {
		red, _ := json.Marshal(c.Redacted())
		assertNoSecret(t, n+" Redacted()", string(red))
		assertNoSecret(t, n+" %+v", fmt.Sprintf("%+v %#v %v", c, c, c.Channel))
		js, _ := json.Marshal(c)
		assertNoSecret(t, n+" JSON", string(js))
	}
	results, err := notify.Test(context.Background(), chans, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r.OK || r.Error == "" {
			t.Fatalf("%s: sent to a closed port? %+v", r.Channel, r)
		}
		assertNoSecret(t, r.Channel+" test error", r.Error)
	}

	var logs bytes.Buffer
	ob := &notify.MemoryOutbox{}
	router, err := notify.NewRouter(notify.RouterConfig{Channels: chans, Outbox: ob, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	d, err := notify.NewDispatcher(notify.DispatcherConfig{Outbox: ob, Channels: chans, Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Backoff: notify.Backoff{Initial: time.Millisecond, Max: time.Millisecond}, DropAfter: 30 * time.Millisecond, Poll: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	m := notify.Message{Host: "web-01", Plugin: "cpu_monitor", Field: "cpu_percent", Level: notify.Critical, Value: "99", Text: "cpu 99"}
	to, err := router.Deliver(ctx, m)
	if err != nil || len(to) != len(chans) {
		t.Fatalf("routed to %v: %v", to, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		failed := 0
		for _, it := range ob.Items() {
			if it.State == notify.Failed {
				failed++
			}
		}
		if failed == len(chans) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not all failed: %+v", ob.Items())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	for _, it := range ob.Items() {
		assertNoSecret(t, it.Channel+" outbox error", it.LastError)
	}
	if !strings.Contains(logs.String(), "notification failed") {
		t.Fatalf("no failure logged:\n%s", logs.String())
	}
	assertNoSecret(t, "logs", logs.String())
}

package notify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mbvm/mb/monitor/notify"
)

var quietLog = slog.New(slog.DiscardHandler)

// scripted is a channel whose sends fail with the scripted errors, in
// order, and then succeed. It records every message delivered.
type scripted struct {
	name string
	mu   sync.Mutex
	errs []error
	got  []notify.Message
	try  int
}

func newScripted(name string, errs ...error) *scripted {
	return &scripted{name: name, errs: errs}
}

func (s *scripted) Name() string { return s.name }
func (s *scripted) Type() string { return "scripted" }
func (s *scripted) Send(_ context.Context, m notify.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.try++
	if s.try <= len(s.errs) {
		return s.errs[s.try-1]
	}
	s.got = append(s.got, m)
	return nil
}

func (s *scripted) delivered() []notify.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]notify.Message(nil), s.got...)
}

func (s *scripted) tries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.try
}

// testTypes has one type, "scripted", whose entries take a token secret
// and an optional room.
func testTypes() notify.Types {
	return notify.Types{
		"scripted": func(name string, f *notify.Fields) (notify.Channel, error) {
			_ = f.Secret("token", notify.Required)
			_ = f.String("room", notify.Optional)
			return newScripted(name), nil
		},
	}
}

func parse(t *testing.T, src string, dir string) (map[string]notify.Configured, error) {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	return notify.ParseChannels(&doc, notify.Options{Types: testTypes(), Dir: dir})
}

func TestParseChannelsErrorsNameLineAndAcceptedValues(t *testing.T) {
	cases := []struct{ name, src, want string }{
		{"unknown type", "a:\n  type: telegram\n", `line 2: notification channel "a": type: unknown channel type "telegram"; accepted: scripted`},
		{"missing type", "a:\n  token: x\n", `notification channel "a": type: missing`},
		{"unknown key", "a:\n  type: scripted\n  token: x\n  colour: red\n", `line 4: notification channel "a": colour: unknown key for this channel type; accepted: min_level, room, token, token_file, type`},
		{"bad min_level", "a:\n  type: scripted\n  token: x\n  min_level: INFO\n", `line 4: notification channel "a": min_level: "INFO" is not accepted; accepted: WARNING, CRITICAL`},
		{"missing secret", "a:\n  type: scripted\n", `notification channel "a": token: missing; give it as token or read it from a file with token_file`},
		{"both forms", "a:\n  type: scripted\n  token: x\n  token_file: /x\n", `line 3: notification channel "a": token: given both as token and token_file; keep one`},
		{"missing file", "a:\n  type: scripted\n  token_file: nope\n", `line 3: notification channel "a": token_file: cannot read the secret`},
		{"not a mapping", "a: [1]\n", `line 1: notification channel "a" must be a mapping`},
		{"world-readable file", "a:\n  type: scripted\n  token_file: open\n", `line 3: notification channel "a": token_file: ` + "DIR/open holds a secret but is readable by others (mode 0644); run: chmod 600 DIR/open"},
		{"list", "- a\n", `notification_channels must be a mapping`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "open"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			want := strings.ReplaceAll(c.want, "DIR", dir)
			_, err := parse(t, c.src, dir)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("error %v, want it to contain %q", err, want)
			}
		})
	}
}

func TestParseChannelsReadsSecretFilesAndMinLevel(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tok"), []byte("s3cr3t-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	chans, err := parse(t, "a:\n  type: scripted\n  token_file: tok\n  min_level: critical\nb:\n  type: scripted\n  token: &t x\n  room: *t\n", dir)
	if err != nil {
		t.Fatal(err)
	}
	if chans["a"].MinLevel != notify.Critical || chans["b"].MinLevel != notify.Warning {
		t.Fatalf("min levels %q %q", chans["a"].MinLevel, chans["b"].MinLevel)
	}
	if chans["a"].Line != 1 || chans["b"].Line != 5 {
		t.Fatalf("lines %d %d", chans["a"].Line, chans["b"].Line)
	}
	if r := chans["a"].Redacted(); r["type"] != "scripted" || r["min_level"] != "CRITICAL" {
		t.Fatalf("redacted %v", r)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	const v = "hunter2-very-secret"
	type cfg struct {
		User     string
		Password notify.Secret
		inner    struct{ p notify.Secret }
	}
	c := cfg{User: "u", Password: notify.NewSecret(v)}
	c.inner.p = notify.NewSecret(v)
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "secret", c.Password, "cfg", c)
	js, _ := json.Marshal(c)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), string(js), logs.String(), fmt.Sprint(&c)} {
		if strings.Contains(s, v) {
			t.Fatalf("secret printed: %s", s)
		}
	}
	if c.Password.Reveal() != v || !strings.Contains(fmt.Sprint(c), "<redacted>") {
		t.Fatal("Reveal or String wrong")
	}
	if got := notify.Scrub("key=hunter2-very-secret&x", c.Password); got != "key=<redacted>&x" {
		t.Fatal(got)
	}
}

func configured(chs ...*scripted) map[string]notify.Configured {
	m := map[string]notify.Configured{}
	for _, c := range chs {
		m[c.name] = notify.Configured{Channel: c, MinLevel: notify.Warning}
	}
	return m
}

func alert(level notify.Level) notify.Message {
	return notify.Message{ID: notify.NewID(), Host: "web-01", Plugin: "cpu_monitor", Field: "cpu_percent", Level: level, Value: "97"}
}

func TestRouterRecipientsMinLevelAndRecovery(t *testing.T) {
	ctx := context.Background()
	mail, push, pager := newScripted("mail"), newScripted("push"), newScripted("pager")
	chans := configured(mail, push, pager)
	p := chans["pager"]
	p.MinLevel = notify.Critical
	chans["pager"] = p
	users := map[string][]string{"alice": {"push", "pager"}, "bob": {"mail"}}
	ob := &notify.MemoryOutbox{}
	r, err := notify.NewRouter(notify.RouterConfig{Channels: chans, Users: users, Outbox: ob, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		m    notify.Message
		want []string
	}{
		{withRecipients(alert(notify.Warning), "alice"), []string{"push"}},                      // pager is CRITICAL-only
		{withRecipients(alert(notify.Critical), "alice", "nobody"), []string{"pager", "push"}},  // unknown user skipped
		{recovery(withRecipients(alert(notify.OK), "alice", "bob")), []string{"pager", "push"}}, // only those that got it, not bob's mail
		{recovery(alert(notify.OK)), nil},                                                       // already recovered: nobody
		{alert(notify.Warning), []string{"mail", "push"}},                                       // no recipients: every channel passing min_level
		{alert(notify.Unknown), []string{"mail", "push"}},                                       // UNKNOWN ranks with WARNING
	}
	for i, s := range steps {
		got, err := r.Deliver(ctx, s.m)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, s.want) {
			t.Fatalf("step %d: routed to %v, want %v", i, got, s.want)
		}
	}
	if n := len(ob.Items()); n != 1+2+2+0+2+2 {
		t.Fatalf("%d outbox items", n)
	}
}

func TestRouterWithoutUsersSendsEverywhere(t *testing.T) {
	chans := configured(newScripted("a"), newScripted("b"))
	r, err := notify.NewRouter(notify.RouterConfig{Channels: chans, Outbox: &notify.MemoryOutbox{}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := r.Deliver(context.Background(), withRecipients(alert(notify.Warning), "alice"))
	if !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatal(got)
	}
}

func TestRouterRefusesUndefinedChannel(t *testing.T) {
	_, err := notify.NewRouter(notify.RouterConfig{Channels: configured(newScripted("a")), Users: map[string][]string{"alice": {"b"}}, Outbox: &notify.MemoryOutbox{}})
	if err == nil || !strings.Contains(err.Error(), `user "alice": notification channel "b" is not defined in notification_channels; defined: a`) {
		t.Fatal(err)
	}
}

func withRecipients(m notify.Message, users ...string) notify.Message {
	m.Recipients = users
	return m
}

func recovery(m notify.Message) notify.Message {
	m.Recovery, m.Previous = true, notify.Critical
	return m
}

// runDispatcher starts a dispatcher with fast backoff and returns a stop
// function.
func runDispatcher(t *testing.T, cfg notify.DispatcherConfig) (*notify.Dispatcher, func()) {
	t.Helper()
	cfg.Backoff = notify.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond}
	cfg.Poll = 2 * time.Millisecond
	if cfg.Logger == nil {
		cfg.Logger = quietLog
	}
	d, err := notify.NewDispatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	return d, func() { cancel(); <-done }
}

// waitItems waits until every outbox item has left the pending state.
func waitItems(t *testing.T, ob *notify.MemoryOutbox) []notify.Item {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		items := ob.Items()
		pending := false
		for _, it := range items {
			pending = pending || it.State == notify.Pending
		}
		if !pending {
			return items
		}
		if time.Now().After(deadline) {
			t.Fatalf("items still pending: %+v", items)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestDispatcherRetriesUntilDeliveredOnce(t *testing.T) {
	flaky := newScripted("flaky", errors.New("connection refused"), errors.New("HTTP 503"))
	ob := &notify.MemoryOutbox{}
	var outcomes []notify.Outcome
	var mu sync.Mutex
	d, stop := runDispatcher(t, notify.DispatcherConfig{Outbox: ob, Channels: configured(flaky), OnOutcome: func(_ notify.Item, o notify.Outcome, _ error) {
		mu.Lock()
		outcomes = append(outcomes, o)
		mu.Unlock()
	}})
	m := alert(notify.Critical)
	if err := ob.Enqueue(context.Background(), m, "flaky"); err != nil {
		t.Fatal(err)
	}
	d.Kick()
	items := waitItems(t, ob)
	stop()
	if items[0].State != notify.Sent || items[0].Attempts != 2 || items[0].LastError != "HTTP 503" {
		t.Fatalf("item %+v", items[0])
	}
	if got := flaky.delivered(); len(got) != 1 || got[0].ID != m.ID {
		t.Fatalf("delivered %d times: %+v", len(got), got)
	}
	if c := d.Counts()["flaky"]; c != (notify.Counts{Sent: 1, Retried: 2}) {
		t.Fatalf("counts %+v", c)
	}
	mu.Lock()
	defer mu.Unlock()
	if !reflect.DeepEqual(outcomes, []notify.Outcome{notify.OutcomeRetried, notify.OutcomeRetried, notify.OutcomeSent}) {
		t.Fatal(outcomes)
	}
}

func TestDispatcherDoesNotRetryPermanentErrors(t *testing.T) {
	refused := newScripted("refused", notify.Permanent(errors.New("401 bad token")))
	ob := &notify.MemoryOutbox{}
	d, stop := runDispatcher(t, notify.DispatcherConfig{Outbox: ob, Channels: configured(refused)})
	_ = ob.Enqueue(context.Background(), alert(notify.Critical), "refused")
	d.Kick()
	items := waitItems(t, ob)
	stop()
	if items[0].State != notify.Failed || items[0].LastError != "401 bad token" || refused.tries() != 1 {
		t.Fatalf("item %+v after %d tries", items[0], refused.tries())
	}
	if c := d.Counts()["refused"]; c != (notify.Counts{Failed: 1}) {
		t.Fatalf("counts %+v", c)
	}
}

func TestDispatcherDropsItemsOlderThanDropAfter(t *testing.T) {
	down := newScripted("down", errors.New("down"), errors.New("down"), errors.New("down"))
	var age time.Duration
	ob := &notify.MemoryOutbox{Now: func() time.Time { return time.Now().Add(-age) }}
	age = 25 * time.Hour
	_ = ob.Enqueue(context.Background(), alert(notify.Critical), "down")
	age = 0
	_ = ob.Enqueue(context.Background(), alert(notify.Critical), "gone") // channel since removed
	d, stop := runDispatcher(t, notify.DispatcherConfig{Outbox: ob, Channels: configured(down), DropAfter: 24 * time.Hour})
	items := waitItems(t, ob)
	stop()
	if items[0].State != notify.Failed || !strings.Contains(items[0].LastError, "dropped: not delivered within 24h0m0s (queued 25h0m0s ago); last error: none") || down.tries() != 0 {
		t.Fatalf("item %+v after %d tries", items[0], down.tries())
	}
	if items[1].State != notify.Failed || !strings.Contains(items[1].LastError, `channel "gone" is no longer configured`) {
		t.Fatalf("item %+v", items[1])
	}
	if c := d.Counts()["down"]; c != (notify.Counts{Failed: 1}) {
		t.Fatalf("counts %+v", c)
	}
}

func TestDispatcherGivesUpAtTheDropTime(t *testing.T) {
	var errs []error // failing for good: more failures than can fit in the drop time
	for i := range 100000 {
		errs = append(errs, fmt.Errorf("e%d", i+1))
	}
	down := newScripted("down", errs...)
	ob := &notify.MemoryOutbox{}
	_ = ob.Enqueue(context.Background(), alert(notify.Critical), "down")
	_, stop := runDispatcher(t, notify.DispatcherConfig{Outbox: ob, Channels: configured(down), DropAfter: 20 * time.Millisecond})
	items := waitItems(t, ob)
	stop()
	if items[0].State != notify.Failed || !strings.Contains(items[0].LastError, "dropped: not delivered within 20ms") || !strings.Contains(items[0].LastError, "last error: e") {
		t.Fatalf("item %+v", items[0])
	}
	if n := len(down.delivered()); n != 0 {
		t.Fatalf("delivered %d", n)
	}
}

func TestBackoffGrowsToMaxWithJitter(t *testing.T) {
	b := notify.Backoff{Initial: time.Second, Max: 10 * time.Second, Factor: 2, Jitter: 0.5}
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second} {
		if got := b.Delay(i+1, 0); got != want {
			t.Fatalf("attempt %d: %s, want %s", i+1, got, want)
		}
	}
	if got := b.Delay(3, 0.999); got <= 2*time.Second || got >= 4*time.Second {
		t.Fatalf("jittered %s", got)
	}
}

func TestTestReportsEachChannel(t *testing.T) {
	ok, bad := newScripted("ok"), newScripted("bad", errors.New("smtp: 535 auth failed"))
	chans := configured(ok, bad)
	res, err := notify.Test(context.Background(), chans, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].Channel != "bad" || res[0].OK || res[0].Error != "smtp: 535 auth failed" || res[1].Channel != "ok" || !res[1].OK {
		t.Fatalf("%+v", res)
	}
	if got := ok.delivered(); len(got) != 1 || !got[0].Test {
		t.Fatalf("%+v", got)
	}
	res, err = notify.Test(context.Background(), chans, "ok")
	if err != nil || len(res) != 1 || !res[0].OK {
		t.Fatalf("%+v %v", res, err)
	}
	if _, err := notify.Test(context.Background(), chans, "nope"); err == nil || !strings.Contains(err.Error(), `no notification channel "nope"; configured: bad, ok`) {
		t.Fatal(err)
	}
}

// gate is a channel whose sends block until released, recording how many
// run at once.
type gate struct {
	name    string
	release chan struct{}
	mu      sync.Mutex
	now     int
	max     int
	sent    int
	started chan struct{}
}

func (g *gate) Name() string { return g.name }
func (g *gate) Type() string { return "gate" }
func (g *gate) Send(ctx context.Context, _ notify.Message) error {
	g.mu.Lock()
	g.now++
	g.max = max(g.max, g.now)
	g.mu.Unlock()
	g.started <- struct{}{}
	defer func() { g.mu.Lock(); g.now--; g.mu.Unlock() }()
	select {
	case <-g.release:
		g.mu.Lock()
		g.sent++
		g.mu.Unlock()
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestDispatcherBoundsConcurrency(t *testing.T) {
	g := &gate{name: "g", release: make(chan struct{}), started: make(chan struct{}, 10)}
	ob := &notify.MemoryOutbox{}
	for range 5 {
		_ = ob.Enqueue(context.Background(), alert(notify.Critical), "g")
	}
	_, stop := runDispatcher(t, notify.DispatcherConfig{Outbox: ob, Channels: map[string]notify.Configured{"g": {Channel: g}}, Concurrency: 2})
	for range 5 {
		<-g.started
		g.release <- struct{}{}
	}
	items := waitItems(t, ob)
	stop()
	for _, it := range items {
		if it.State != notify.Sent {
			t.Fatalf("%+v", it)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.max > 2 || g.sent != 5 {
		t.Fatalf("%d sends at once (limit 2), %d sent", g.max, g.sent)
	}
}

func TestDispatcherTimesOutASendAndRetries(t *testing.T) {
	g := &gate{name: "g", release: make(chan struct{}), started: make(chan struct{}, 10)}
	ob := &notify.MemoryOutbox{}
	_ = ob.Enqueue(context.Background(), alert(notify.Critical), "g")
	_, stop := runDispatcher(t, notify.DispatcherConfig{Outbox: ob, Channels: map[string]notify.Configured{"g": {Channel: g}}, SendTimeout: 5 * time.Millisecond})
	<-g.started // the first attempt hangs until its timeout
	<-g.started
	g.release <- struct{}{}
	items := waitItems(t, ob)
	stop()
	if items[0].State != notify.Sent || items[0].Attempts < 1 || !strings.Contains(items[0].LastError, "deadline exceeded") {
		t.Fatalf("%+v", items[0])
	}
}

// ctxOutbox is a MemoryOutbox that refuses work on an ended context, as a
// database would.
type ctxOutbox struct{ notify.MemoryOutbox }

func (o *ctxOutbox) MarkSent(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return o.MemoryOutbox.MarkSent(ctx, id)
}

// stubborn completes its send only once its context has ended: the
// service took the message just as mb began shutting down.
type stubborn struct{ started chan struct{} }

func (s *stubborn) Name() string { return "s" }
func (s *stubborn) Type() string { return "stubborn" }
func (s *stubborn) Send(ctx context.Context, _ notify.Message) error {
	s.started <- struct{}{}
	<-ctx.Done()
	return nil
}

func TestSendFinishingDuringShutdownIsRecordedSent(t *testing.T) {
	ch := &stubborn{started: make(chan struct{}, 1)}
	ob := &ctxOutbox{}
	_ = ob.Enqueue(context.Background(), alert(notify.Critical), "s")
	_, stop := runDispatcher(t, notify.DispatcherConfig{Outbox: ob, Channels: map[string]notify.Configured{"s": {Channel: ch}}})
	<-ch.started
	stop()
	if it := ob.Items()[0]; it.State != notify.Sent {
		t.Fatalf("a delivered notification is left %s: it would be sent again after the restart", it.State)
	}
}

// TestScrubURLPathAndQuery: a service that echoes only the path or query
// of a secret webhook URL does not leak the key in error texts.
func TestScrubURLPathAndQuery(t *testing.T) {
	s := notify.NewSecret("https://hooks.example.com/services/T0/B0/KEYkey123?token=QTOKEN")
	for _, echoed := range []string{
		"refused POST /services/T0/B0/KEYkey123",
		"bad query token=QTOKEN",
		"full https://hooks.example.com/services/T0/B0/KEYkey123?token=QTOKEN",
	} {
		got := notify.Scrub(echoed, s)
		if strings.Contains(got, "KEYkey123") || strings.Contains(got, "QTOKEN") {
			t.Errorf("Scrub(%q) = %q", echoed, got)
		}
	}
}

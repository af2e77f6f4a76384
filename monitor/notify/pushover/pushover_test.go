package pushover_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/mbvm/mb/monitor/notify"
	"github.com/mbvm/mb/monitor/notify/notifytest"
	"github.com/mbvm/mb/monitor/notify/pushover"
)

var types = notify.Types{pushover.Type: pushover.Parse}

const (
	token = "azGDORePK8gMaC0QOYAMyEEuzJnyUi-XXXSECRETXXX"
	user  = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG-XXXUSERXXX"
)

func TestSendPostsTheDocumentedForm(t *testing.T) {
	srv := notifytest.NewServer(t)
	srv.Body = `{"status":1,"request":"647d2300-702c-4b38-8b2f-d56326ae460b"}`
	ch := notifytest.Parse(t, types, fmt.Sprintf("type: pushover\ntoken: %s\nuser: %s\napi_url: %s/1/messages.json\n", token, user, srv.URL))
	if err := ch.Send(context.Background(), notifytest.Alert()); err != nil {
		t.Fatal(err)
	}
	r := srv.Requests()[0]
	if r.Method != "POST" || r.Path != "/1/messages.json" || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		t.Fatalf("request %s %s %s", r.Method, r.Path, r.Header.Get("Content-Type"))
	}
	form, err := url.ParseQuery(string(r.Body))
	if err != nil {
		t.Fatal(err)
	}
	want := url.Values{"token": {token}, "user": {user}, "message": {"cpu_percent is 97.5 (> 90)"},
		"title": {"[mb] CRITICAL web-01 cpu_monitor.cpu_percent"}, "priority": {"1"}, "timestamp": {"1795669200"}}
	if form.Encode() != want.Encode() {
		t.Fatalf("form\n%s\nwant\n%s", form.Encode(), want.Encode())
	}
}

func TestPriorities(t *testing.T) {
	w := notifytest.Alert()
	w.Level = notify.Warning
	for m, want := range map[*notify.Message]int{ptr(notifytest.Alert()): 1, &w: 0, ptr(notifytest.Recovery()): -1} {
		if got := pushover.Priority(*m); got != want {
			t.Fatalf("%s: %d, want %d", m.Level, got, want)
		}
	}
}

func ptr(m notify.Message) *notify.Message { return &m }

func TestRefusedTokenIsPermanentAndHidden(t *testing.T) {
	srv := notifytest.NewServer(t)
	srv.Reply = func(int, notifytest.Request) (int, string) {
		return 400, `{"token":"invalid","errors":["application token is invalid: ` + token + `"],"status":0}`
	}
	ch := notifytest.Parse(t, types, fmt.Sprintf("type: pushover\ntoken: %s\nuser: %s\napi_url: %s/1/messages.json\n", token, user, srv.URL))
	err := ch.Send(context.Background(), notifytest.Alert())
	if err == nil || !notify.IsPermanent(err) || strings.Contains(err.Error(), "XXXSECRETXXX") || !strings.Contains(err.Error(), "application token is invalid") {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprintf("%+v", ch), fmt.Sprint(ch.(notify.Redactor).Redacted())} {
		if strings.Contains(s, "XXXSECRETXXX") || strings.Contains(s, "XXXUSERXXX") {
			t.Fatal(s)
		}
	}
}

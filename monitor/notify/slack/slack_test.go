package slack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/mbvm/mb/monitor/notify"
	"github.com/mbvm/mb/monitor/notify/notifytest"
	"github.com/mbvm/mb/monitor/notify/slack"
)

var types = notify.Types{slack.Type: slack.Parse}

func TestSendPostsTheDocumentedJSON(t *testing.T) {
	srv := notifytest.NewServer(t)
	srv.Body = "ok"
	ch := notifytest.Parse(t, types, fmt.Sprintf("type: slack\nwebhook_url: %s/services/T000/B000/XXXSECRETXXX\nchannel: '#ops'\n", srv.URL))
	if err := ch.Send(context.Background(), notifytest.Alert()); err != nil {
		t.Fatal(err)
	}
	reqs := srv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	if r.Method != "POST" || r.Path != "/services/T000/B000/XXXSECRETXXX" || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("request %s %s %s", r.Method, r.Path, r.Header.Get("Content-Type"))
	}
	var body map[string]string
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"text": "[mb] CRITICAL web-01 cpu_monitor.cpu_percent\ncpu_percent is 97.5 (> 90)", "channel": "#ops"}
	if fmt.Sprint(body) != fmt.Sprint(want) {
		t.Fatalf("body %v, want %v", body, want)
	}
}

func TestErrorsAreClassifiedAndHideTheWebhook(t *testing.T) {
	srv := notifytest.NewServer(t)
	srv.Reply = func(n int, _ notifytest.Request) (int, string) {
		if n == 1 {
			return 500, "internal"
		}
		return 404, "no_service"
	}
	ch := notifytest.Parse(t, types, fmt.Sprintf("type: slack\nwebhook_url: %s/services/XXXSECRETXXX\n", srv.URL))
	err := ch.Send(context.Background(), notifytest.Alert())
	if err == nil || notify.IsPermanent(err) || strings.Contains(err.Error(), "XXXSECRETXXX") {
		t.Fatalf("500: %v", err)
	}
	err = ch.Send(context.Background(), notifytest.Alert())
	if err == nil || !notify.IsPermanent(err) || !strings.Contains(err.Error(), "404") || strings.Contains(err.Error(), "XXXSECRETXXX") {
		t.Fatalf("404: %v", err)
	}
	for _, s := range []string{fmt.Sprint(ch), fmt.Sprintf("%+v", ch), fmt.Sprint(ch.(notify.Redactor).Redacted())} {
		if strings.Contains(s, "XXXSECRETXXX") {
			t.Fatalf("secret shown: %s", s)
		}
	}
}

func TestRefusesAWebhookThatIsNotAURL(t *testing.T) {
	_, err := notifytest.ParseErr(types, "type: slack\nwebhook_url: hooks.slack.com/XXXSECRETXXX\n")
	if err == nil || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), "webhook_url: is not an http:// or https:// URL") || strings.Contains(err.Error(), "XXXSECRETXXX") {
		t.Fatal(err)
	}
}

package signal_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/mbvm/mb/monitor/notify"
	"github.com/mbvm/mb/monitor/notify/notifytest"
	"github.com/mbvm/mb/monitor/notify/signal"
)

var types = notify.Types{signal.Type: signal.Parse}

func TestSendPostsV2Send(t *testing.T) {
	srv := notifytest.NewServer(t)
	srv.Reply = func(int, notifytest.Request) (int, string) { return 201, `{"timestamp":"1764133200000"}` }
	ch := notifytest.Parse(t, types, fmt.Sprintf("type: signal\nurl: %s/\nphone_number: '+431212131491291'\nrecipient: ['+4354546464654', 'group.ZmFrZWdyb3VwCg==']\n", srv.URL))
	if err := ch.Send(context.Background(), notifytest.Alert()); err != nil {
		t.Fatal(err)
	}
	r := srv.Requests()[0]
	if r.Method != "POST" || r.Path != "/v2/send" || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("request %s %s %s", r.Method, r.Path, r.Header.Get("Content-Type"))
	}
	var body struct {
		Message    string   `json:"message"`
		Number     string   `json:"number"`
		Recipients []string `json:"recipients"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	if body.Message != "[mb] CRITICAL web-01 cpu_monitor.cpu_percent\ncpu_percent is 97.5 (> 90)" || body.Number != "+431212131491291" ||
		fmt.Sprint(body.Recipients) != "[+4354546464654 group.ZmFrZWdyb3VwCg==]" {
		t.Fatalf("body %+v", body)
	}
}

func TestSingleRecipientAndErrors(t *testing.T) {
	srv := notifytest.NewServer(t)
	srv.Reply = func(int, notifytest.Request) (int, string) { return 400, `{"error":"Invalid recipient"}` }
	ch := notifytest.Parse(t, types, fmt.Sprintf("type: signal\nurl: %s\nphone_number: '+1555'\nrecipient: '+1666'\n", srv.URL))
	err := ch.Send(context.Background(), notifytest.Alert())
	if err == nil || !notify.IsPermanent(err) || !strings.Contains(err.Error(), "Invalid recipient") {
		t.Fatal(err)
	}
	if !strings.Contains(string(srv.Requests()[0].Body), `"recipients":["+1666"]`) {
		t.Fatal(string(srv.Requests()[0].Body))
	}
	if _, err := notifytest.ParseErr(types, "type: signal\nurl: http://x\nphone_number: '+1'\n"); err == nil || !strings.Contains(err.Error(), "recipients: missing") {
		t.Fatal(err)
	}
}

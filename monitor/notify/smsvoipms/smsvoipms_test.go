package smsvoipms_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/mbvm/mb/monitor/notify"
	"github.com/mbvm/mb/monitor/notify/notifytest"
	"github.com/mbvm/mb/monitor/notify/smsvoipms"
)

var types = notify.Types{smsvoipms.Type: smsvoipms.Parse}

const password = "p@ss w0rd&XXXSECRETXXX"

func TestSendGetsSendSMS(t *testing.T) {
	srv := notifytest.NewServer(t)
	srv.Body = `{"status":"success","sms":23434}`
	ch := notifytest.Parse(t, types, fmt.Sprintf("type: sms_voipms\napi_username: john@example.com\napi_key: %q\ndid: '5551234567'\nrecipient: '5557654321'\napi_url: %s/api/v1/rest.php\n", password, srv.URL))
	if err := ch.Send(context.Background(), notifytest.Alert()); err != nil {
		t.Fatal(err)
	}
	r := srv.Requests()[0]
	if r.Method != "GET" || r.Path != "/api/v1/rest.php" || len(r.Body) != 0 {
		t.Fatalf("request %s %s %q", r.Method, r.Path, r.Body)
	}
	want := map[string]string{"api_username": "john@example.com", "api_password": password, "method": "sendSMS", "did": "5551234567", "dst": "5557654321",
		"message": "CRITICAL web-01 cpu_monitor.cpu_percent: cpu_percent is 97.5 (> 90)"}
	if len(r.Query) != len(want) {
		t.Fatalf("query %v", r.Query)
	}
	for k, v := range want {
		if got := r.Query[k]; len(got) != 1 || got[0] != v {
			t.Fatalf("%s = %q, want %q", k, got, v)
		}
	}
}

func TestLongTextIsCutTo160(t *testing.T) {
	m := notifytest.Alert()
	m.Text = strings.Repeat("é", 300)
	if n := len([]rune(smsvoipms.Text(m))); n != 160 {
		t.Fatal(n)
	}
}

func TestStatusesAndSecrecy(t *testing.T) {
	srv := notifytest.NewServer(t)
	srv.Reply = func(n int, _ notifytest.Request) (int, string) {
		return 200, []string{`{"status":"invalid_credentials"}`, `{"status":"sms_failed"}`}[n-1]
	}
	ch := notifytest.Parse(t, types, fmt.Sprintf("type: sms_voipms\napi_username: j\napi_password: %q\ndid: '1'\ndst: '2'\napi_url: %s/\n", password, srv.URL))
	err := ch.Send(context.Background(), notifytest.Alert())
	if err == nil || !notify.IsPermanent(err) || !strings.Contains(err.Error(), "invalid_credentials") {
		t.Fatal(err)
	}
	err = ch.Send(context.Background(), notifytest.Alert())
	if err == nil || notify.IsPermanent(err) {
		t.Fatal(err)
	}
	srv.Close() // a transport error must not show the URL, whose query holds the password
	err = ch.Send(context.Background(), notifytest.Alert())
	if err == nil || notify.IsPermanent(err) {
		t.Fatal(err)
	}
	for _, s := range []string{err.Error(), fmt.Sprintf("%+v", ch), fmt.Sprint(ch.(notify.Redactor).Redacted())} {
		if strings.Contains(s, "XXXSECRETXXX") || strings.Contains(s, "api_password=") {
			t.Fatalf("secret shown: %s", s)
		}
	}
}

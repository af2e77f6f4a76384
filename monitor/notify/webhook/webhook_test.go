package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mbvm/mb/monitor/notify"
	"github.com/mbvm/mb/monitor/notify/notifytest"
	"github.com/mbvm/mb/monitor/notify/webhook"
)

var types = notify.Types{webhook.Type: webhook.Parse}

const key = "k3y-XXXSECRETXXX"

func TestSendPostsSignedJSON(t *testing.T) {
	srv := notifytest.NewServer(t)
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ch := notifytest.Parse(t, types, fmt.Sprintf("type: webhook\nurl: %s/hook?token=abc\nhmac_key_file: %s\n", srv.URL, keyFile))
	if err := ch.Send(context.Background(), notifytest.Recovery()); err != nil {
		t.Fatal(err)
	}
	r := srv.Requests()[0]
	if r.Method != "POST" || r.Path != "/hook" || r.Query["token"][0] != "abc" || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("X-MB-Message-ID") != "fedcba9876543210" {
		t.Fatalf("request %+v", r)
	}
	// Verify the signature as a receiver would, independently of Sign.
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write(r.Body)
	if got, want := r.Header.Get("X-MB-Signature"), "sha256="+hex.EncodeToString(mac.Sum(nil)); !hmac.Equal([]byte(got), []byte(want)) {
		t.Fatalf("signature %q, want %q", got, want)
	}
	var p map[string]any
	if err := json.Unmarshal(r.Body, &p); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"id": "fedcba9876543210", "time": "2026-11-26T05:10:00Z", "host": "web-01", "plugin": "cpu_monitor", "field": "cpu_percent",
		"level": "OK", "previous": "CRITICAL", "value": "12", "text": "cpu_percent is 12", "subject": "[mb] RECOVERED web-01 cpu_monitor.cpu_percent", "recovery": true, "test": false}
	if fmt.Sprint(p) != fmt.Sprint(want) {
		t.Fatalf("body\n%v\nwant\n%v", p, want)
	}
	red := fmt.Sprint(ch.(notify.Redactor).Redacted(), ch)
	if strings.Contains(red, "XXXSECRETXXX") || strings.Contains(red, "abc") {
		t.Fatalf("redacted view shows a secret: %s", red)
	}
}

func TestUnsignedWithoutKeyAndRetryClasses(t *testing.T) {
	srv := notifytest.NewServer(t)
	srv.Reply = func(n int, _ notifytest.Request) (int, string) {
		return []int{200, 503, 429, 400}[n-1], "echo " + key
	}
	ch := notifytest.Parse(t, types, fmt.Sprintf("type: webhook\nurl: %s/\n", srv.URL))
	if err := ch.Send(context.Background(), notifytest.Alert()); err != nil {
		t.Fatal(err)
	}
	if h := srv.Requests()[0].Header.Get("X-MB-Signature"); h != "" {
		t.Fatalf("signed without a key: %q", h)
	}
	for _, perm := range []bool{false, false, true} {
		err := ch.Send(context.Background(), notifytest.Alert())
		if err == nil || notify.IsPermanent(err) != perm {
			t.Fatalf("err %v, permanent want %v", err, perm)
		}
	}
}

func TestAnswerEchoingTheKeyIsScrubbed(t *testing.T) {
	srv := notifytest.NewServer(t)
	srv.Reply = func(int, notifytest.Request) (int, string) { return 401, "bad key " + key }
	ch := notifytest.Parse(t, types, fmt.Sprintf("type: webhook\nurl: %s/\nhmac_key: %s\n", srv.URL, key))
	err := ch.Send(context.Background(), notifytest.Alert())
	if err == nil || strings.Contains(err.Error(), "XXXSECRETXXX") || !strings.Contains(err.Error(), "bad key <redacted>") {
		t.Fatal(err)
	}
}

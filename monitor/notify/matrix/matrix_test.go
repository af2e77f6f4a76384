package matrix_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/mbvm/mb/monitor/notify"
	"github.com/mbvm/mb/monitor/notify/matrix"
	"github.com/mbvm/mb/monitor/notify/notifytest"
)

var types = notify.Types{matrix.Type: matrix.Parse}

const password = "correct horse XXXSECRETXXX"

// homeserver answers login with token-1 then token-2, and refuses sends
// with the token listed in expired.
func homeserver(t *testing.T, expired string) *notifytest.Server {
	srv := notifytest.NewServer(t)
	logins := 0
	srv.Reply = func(_ int, r notifytest.Request) (int, string) {
		switch {
		case r.Method == "POST" && r.Path == "/_matrix/client/v3/login":
			logins++
			return 200, fmt.Sprintf(`{"user_id":"@mb:example.org","access_token":"token-%d","device_id":"ABC"}`, logins)
		case r.Method == "PUT" && strings.HasPrefix(r.Path, "/_matrix/client/v3/rooms/"):
			if r.Header.Get("Authorization") == "Bearer "+expired {
				return 401, `{"errcode":"M_UNKNOWN_TOKEN","error":"Invalid access token passed."}`
			}
			return 200, `{"event_id":"$YUwRidLecu:example.com"}`
		}
		return 404, `{"errcode":"M_UNRECOGNIZED"}`
	}
	return srv
}

func TestLogsInThenSendsToTheRoom(t *testing.T) {
	srv := homeserver(t, "")
	ch := notifytest.Parse(t, types, fmt.Sprintf("type: matrix\nhomeserver: %s\nuser: mb\npassword: %q\nroom_id: '!ops:example.org'\n", srv.URL, password))
	for _, m := range []notify.Message{notifytest.Alert(), notifytest.Recovery()} {
		if err := ch.Send(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	reqs := srv.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want a login and two sends", len(reqs))
	}
	login := reqs[0]
	var lb struct {
		Type       string            `json:"type"`
		Identifier map[string]string `json:"identifier"`
		Password   string            `json:"password"`
	}
	if err := json.Unmarshal(login.Body, &lb); err != nil {
		t.Fatal(err)
	}
	if login.Header.Get("Content-Type") != "application/json" || lb.Type != "m.login.password" || lb.Identifier["type"] != "m.id.user" || lb.Identifier["user"] != "mb" || lb.Password != password {
		t.Fatalf("login %s", login.Body)
	}
	send := reqs[1]
	if send.Method != "PUT" || send.Path != "/_matrix/client/v3/rooms/%21ops:example.org/send/m.room.message/mb-0123456789abcdef" ||
		send.Header.Get("Authorization") != "Bearer token-1" || send.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("send %s %s %v", send.Method, send.Path, send.Header)
	}
	var ev map[string]string
	if err := json.Unmarshal(send.Body, &ev); err != nil {
		t.Fatal(err)
	}
	if ev["msgtype"] != "m.text" || ev["body"] != "[mb] CRITICAL web-01 cpu_monitor.cpu_percent\ncpu_percent is 97.5 (> 90)" {
		t.Fatalf("event %v", ev)
	}
	if reqs[2].Header.Get("Authorization") != "Bearer token-1" || !strings.HasSuffix(reqs[2].Path, "/mb-fedcba9876543210") {
		t.Fatalf("second send did not reuse the token: %+v", reqs[2])
	}
}

func TestRefusedTokenLogsInAgainOnce(t *testing.T) {
	srv := homeserver(t, "token-1")
	ch := notifytest.Parse(t, types, fmt.Sprintf("type: matrix\nhomeserver: %s\nuser: mb\npassword: %q\nroom_id: '!ops:example.org'\n", srv.URL, password))
	if err := ch.Send(context.Background(), notifytest.Alert()); err != nil {
		t.Fatal(err)
	}
	var seq []string
	for _, r := range srv.Requests() {
		seq = append(seq, r.Method+" "+r.Header.Get("Authorization"))
	}
	if fmt.Sprint(seq) != "[POST  PUT Bearer token-1 POST  PUT Bearer token-2]" {
		t.Fatal(seq)
	}
}

func TestAccessTokenWithoutLoginAndRefusal(t *testing.T) {
	srv := homeserver(t, "tok-XXXSECRETXXX")
	ch := notifytest.Parse(t, types, fmt.Sprintf("type: matrix\nhomeserver: %s\naccess_token: tok-XXXSECRETXXX\nroom_id: '!ops:example.org'\n", srv.URL))
	err := ch.Send(context.Background(), notifytest.Alert())
	if err == nil || !notify.IsPermanent(err) || strings.Contains(err.Error(), "XXXSECRETXXX") {
		t.Fatal(err)
	}
	if n := len(srv.Requests()); n != 1 {
		t.Fatalf("%d requests", n)
	}
	for _, s := range []string{fmt.Sprintf("%+v", ch), fmt.Sprint(ch.(notify.Redactor).Redacted())} {
		if strings.Contains(s, "XXXSECRETXXX") {
			t.Fatal(s)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for src, want := range map[string]string{
		"type: matrix\nhomeserver: https://m.org\nroom_id: '!a:m.org'\n":                                        "give either a password (with user) or an access_token",
		"type: matrix\nhomeserver: https://m.org\npassword: x\nroom_id: '!a:m.org'\n":                           "user: missing",
		"type: matrix\nhomeserver: https://m.org\naccess_token: x\nroom_id: '#ops:m.org'\n":                     `room_id: "#ops:m.org" is not a room ID`,
		"type: matrix\nhomeserver: https://m.org\naccess_token: x\npassword: y\nuser: u\nroom_id: '!a:m.org'\n": "give either",
	} {
		if _, err := notifytest.ParseErr(types, src); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", src, err, want)
		}
	}
}

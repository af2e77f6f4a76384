package email_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mbvm/mb/monitor/notify"
	"github.com/mbvm/mb/monitor/notify/email"
	"github.com/mbvm/mb/monitor/notify/notifytest"
	"github.com/mbvm/mb/monitor/notify/notifytest/smtptest"
)

var types = notify.Types{email.Type: email.Parse}

const password = "pa55 w0rd XXXSECRETXXX"

func channel(t *testing.T, s *smtptest.Server, extra string) notify.Channel {
	t.Helper()
	return notifytest.Parse(t, types, fmt.Sprintf("type: email\nsmtp_server: %s\nport: %d\nsender: 'mb monitor <mb@example.org>'\nrecipients: [ops@example.org, oncall@example.org]\n%s", s.Host, s.Port, extra))
}

func TestPlainDeliveryComposesTheMessage(t *testing.T) {
	s := smtptest.Start(t, smtptest.Options{})
	ch := channel(t, s, "tls: none\n")
	m := notifytest.Alert()
	m.Text = "cpu_percent is 97.5 (> 90) — très chargé"
	if err := ch.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	got := s.Mails()
	if len(got) != 1 {
		t.Fatalf("%d mails", len(got))
	}
	r := got[0]
	if r.From != "mb@example.org" || fmt.Sprint(r.To) != "[ops@example.org oncall@example.org]" || r.User != "" || r.TLS {
		t.Fatalf("envelope %+v", r)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(r.Data))
	if err != nil {
		t.Fatal(err)
	}
	subject, _ := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	for k, want := range map[string]string{
		"From": "mb monitor <mb@example.org>", "To": "ops@example.org, oncall@example.org", "Message-ID": "<0123456789abcdef@mb-monitor>",
		"Content-Type": "text/plain; charset=utf-8", "Content-Transfer-Encoding": "quoted-printable", "Date": "Thu, 26 Nov 2026 05:00:00 +0000",
	} {
		if got := msg.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if subject != "[mb] CRITICAL web-01 cpu_monitor.cpu_percent" {
		t.Errorf("subject %q", subject)
	}
	body, _ := io.ReadAll(quotedprintable.NewReader(msg.Body))
	for _, want := range []string{"cpu_percent is 97.5 (> 90) — très chargé\r\n", "Host:     web-01", "Check:    cpu_monitor.cpu_percent", "State:    WARNING -> CRITICAL", "Value:    97.5"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
}

func TestStartTLSWithAuthPlain(t *testing.T) {
	cfg, caFile := smtptest.SelfSigned(t)
	s := smtptest.Start(t, smtptest.Options{TLS: cfg, User: "mb", Password: password})
	ch := channel(t, s, fmt.Sprintf("user: mb\npassword: %q\nca_file: %s\n", password, caFile))
	if err := ch.Send(context.Background(), notifytest.Alert()); err != nil {
		t.Fatal(err)
	}
	if got := s.Mails(); len(got) != 1 || !got[0].TLS || got[0].User != "mb" {
		t.Fatalf("%+v", got)
	}
}

func TestImplicitTLSWithAuthLogin(t *testing.T) {
	cfg, caFile := smtptest.SelfSigned(t)
	s := smtptest.Start(t, smtptest.Options{TLS: cfg, Implicit: true, User: "mb", Password: password})
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ch := channel(t, s, fmt.Sprintf("tls: tls\nauth: login\nuser: mb\npassword_file: %s\nca_file: %s\n", pwFile, caFile))
	if err := ch.Send(context.Background(), notifytest.Alert()); err != nil {
		t.Fatal(err)
	}
	if got := s.Mails(); len(got) != 1 || !got[0].TLS || got[0].User != "mb" {
		t.Fatalf("%+v", got)
	}
}

func TestWrongPasswordIsPermanentAndNeverShown(t *testing.T) {
	cfg, caFile := smtptest.SelfSigned(t)
	s := smtptest.Start(t, smtptest.Options{TLS: cfg, User: "mb", Password: password})
	ch := channel(t, s, fmt.Sprintf("user: mb\npassword: 'wrong XXXSECRETXXX'\nca_file: %s\n", caFile))
	err := ch.Send(context.Background(), notifytest.Alert())
	if err == nil || !notify.IsPermanent(err) || !strings.Contains(err.Error(), "535") || strings.Contains(err.Error(), "XXXSECRETXXX") {
		t.Fatal(err)
	}
	for _, v := range []string{fmt.Sprintf("%+v", ch), fmt.Sprintf("%#v", ch), fmt.Sprint(ch.(notify.Redactor).Redacted())} {
		if strings.Contains(v, "XXXSECRETXXX") {
			t.Fatal(v)
		}
	}
	if len(s.Mails()) != 0 {
		t.Fatal("delivered without auth")
	}
}

func TestMissingSTARTTLSAndUntrustedCertificateArePermanent(t *testing.T) {
	plain := smtptest.Start(t, smtptest.Options{})
	err := channel(t, plain, "").Send(context.Background(), notifytest.Alert())
	if err == nil || !notify.IsPermanent(err) || !strings.Contains(err.Error(), "does not offer STARTTLS") {
		t.Fatal(err)
	}
	cfg, _ := smtptest.SelfSigned(t)
	tlsServer := smtptest.Start(t, smtptest.Options{TLS: cfg})
	err = channel(t, tlsServer, "").Send(context.Background(), notifytest.Alert())
	if err == nil || !notify.IsPermanent(err) || !strings.Contains(err.Error(), "certificate") {
		t.Fatal(err)
	}
	if len(plain.Mails())+len(tlsServer.Mails()) != 0 {
		t.Fatal("sent in the clear or to an untrusted server")
	}
}

func TestTemporaryRefusalAndDownServerAreRetried(t *testing.T) {
	s := smtptest.Start(t, smtptest.Options{})
	s.Refuse(451, "try again later")
	err := channel(t, s, "tls: none\n").Send(context.Background(), notifytest.Alert())
	if err == nil || notify.IsPermanent(err) || !strings.Contains(err.Error(), "451") {
		t.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	down := &smtptest.Server{Host: "127.0.0.1", Port: port}
	err = channel(t, down, "tls: none\n").Send(context.Background(), notifytest.Alert())
	if err == nil || notify.IsPermanent(err) {
		t.Fatal(err)
	}
	var ne *net.OpError
	_ = errors.As(err, &ne) // the text is what matters: it names the server
	if !strings.Contains(err.Error(), fmt.Sprintf("email via 127.0.0.1:%d", port)) {
		t.Fatal(err)
	}
}

func TestConfigDefaultsAndErrors(t *testing.T) {
	ch := notifytest.Parse(t, types, "type: email\nsmtp_server: smtp.example.com\nport: 465\nsender: a@example.com\nrecipients: b@example.com\n")
	if r := ch.(notify.Redactor).Redacted(); r["tls"] != "tls" || r["port"] != 465 {
		t.Fatalf("%v", r)
	}
	ch = notifytest.Parse(t, types, "type: email\nsmtp_server: smtp.example.com\nsender: a@example.com\nrecipients: b@example.com\n")
	if r := ch.(notify.Redactor).Redacted(); r["tls"] != "starttls" || r["port"] != 587 {
		t.Fatalf("%v", r)
	}
	for src, want := range map[string]string{
		"type: email\nsmtp_server: s\nsender: a@b.c\nrecipients: x\n":                                         `recipients: "x" is not an e-mail address`,
		"type: email\nsmtp_server: s\nsender: a@b.c\nrecipients: d@e.f\ntls: ssl\n":                           `tls: "ssl" is not accepted; accepted: starttls, tls, none`,
		"type: email\nsmtp_server: s\nsender: a@b.c\nrecipients: d@e.f\nuser: u\n":                            "password: missing",
		"type: email\nsmtp_server: s\nsender: a@b.c\nrecipients: d@e.f\nport: 99999\n":                        `port: "99999" is not a whole number from 1 to 65535`,
		"type: email\nsmtp_server: s\nsender: a@b.c\nrecipients: d@e.f\nauth: gssapi\nuser: u\npassword: p\n": `auth: "gssapi" is not accepted`,
	} {
		if _, err := notifytest.ParseErr(types, src); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", src, err, want)
		}
	}
}

// TestOutboxDeliversOnceAfterRefusals runs the dispatcher against a real
// SMTP server that refuses twice with 451 and then accepts: exactly one
// mail arrives.
func TestOutboxDeliversOnceAfterRefusals(t *testing.T) {
	s := smtptest.Start(t, smtptest.Options{})
	s.Refuse(451, "greylisted, try again later")
	chans := map[string]notify.Configured{"mail": {Channel: channel(t, s, "tls: none\n"), MinLevel: notify.Warning}}
	ob := &notify.MemoryOutbox{}
	retries := make(chan struct{}, 10)
	d, err := notify.NewDispatcher(notify.DispatcherConfig{Outbox: ob, Channels: chans, Poll: time.Millisecond, Logger: slog.New(slog.DiscardHandler),
		Backoff: notify.Backoff{Initial: time.Millisecond, Max: 2 * time.Millisecond},
		OnOutcome: func(_ notify.Item, o notify.Outcome, _ error) {
			if o == notify.OutcomeRetried {
				retries <- struct{}{}
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if err := ob.Enqueue(ctx, notifytest.Alert(), "mail"); err != nil {
		t.Fatal(err)
	}
	d.Kick()
	<-retries
	<-retries
	s.Refuse(0, "")
	got := s.Wait(t, 1, 10*time.Second)
	for deadline := time.Now().Add(10 * time.Second); ob.Items()[0].State == notify.Pending && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if it := ob.Items()[0]; it.State != notify.Sent || it.Attempts < 2 {
		t.Fatalf("item %+v", it)
	}
	if got = s.Mails(); len(got) != 1 || got[0].Header("Message-ID") != "<0123456789abcdef@mb-monitor>" {
		t.Fatalf("%d mails: %+v", len(got), got)
	}
	if c := d.Counts()["mail"]; c.Sent != 1 || c.Retried < 2 || c.Failed != 0 {
		t.Fatalf("counts %+v", c)
	}
}

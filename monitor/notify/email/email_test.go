package email_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mbvm/mb/monitor/notify"
	"github.com/mbvm/mb/monitor/notify/email"
	"github.com/mbvm/mb/monitor/notify/notifytest"
)

var types = notify.Types{email.Type: email.Parse}

const password = "pa55 w0rd XXXSECRETXXX"

// received is one mail the test server accepted.
type received struct {
	From string
	To   []string
	Data []byte
	User string // who authenticated, "" if nobody
	TLS  bool   // whether the session was encrypted
}

type serverOpts struct {
	tls         *tls.Config // offered as STARTTLS, or for the whole connection with implicit
	implicit    bool
	requireAuth bool
	rcptErr     error
}

// mailServer is a real SMTP server (github.com/emersion/go-smtp) on a
// loopback port.
type mailServer struct {
	host string
	port int
	mu   sync.Mutex
	got  []received
}

func (s *mailServer) mails() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.got...)
}

type session struct {
	srv  *mailServer
	opts serverOpts
	conn *smtp.Conn
	cur  received
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain, sasl.Login} }

func (s *session) Auth(mech string) (sasl.Server, error) {
	check := func(user, pass string) error {
		if user != "mb" || pass != password {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
		}
		s.cur.User = user
		return nil
	}
	if mech == sasl.Login {
		return &loginServer{check: check}, nil
	}
	return sasl.NewPlainServer(func(_, user, pass string) error { return check(user, pass) }), nil
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if s.opts.requireAuth && s.cur.User == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	s.cur.From = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.opts.rcptErr != nil {
		return s.opts.rcptErr
	}
	s.cur.To = append(s.cur.To, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.Data = b
	_, s.cur.TLS = s.conn.TLSConnectionState()
	s.srv.mu.Lock()
	s.srv.got = append(s.srv.got, s.cur)
	s.srv.mu.Unlock()
	return nil
}

func (s *session) Reset()        { s.cur = received{User: s.cur.User} }
func (s *session) Logout() error { return nil }

// loginServer is the server side of AUTH LOGIN, which go-sasl lacks.
type loginServer struct {
	check func(user, pass string) error
	user  string
	step  int
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	l.step++
	switch l.step {
	case 1:
		if resp != nil {
			l.user, l.step = string(resp), 2
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 2:
		l.user = string(resp)
		return []byte("Password:"), false, nil
	}
	return nil, true, l.check(l.user, string(resp))
}

type quiet struct{}

func (quiet) Printf(string, ...interface{}) {}
func (quiet) Println(...interface{})        {}

func startServer(t *testing.T, o serverOpts) *mailServer {
	t.Helper()
	ms := &mailServer{}
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{srv: ms, opts: o, conn: c}, nil
	}))
	s.Domain = "mx.test"
	s.TLSConfig = o.tls
	s.AllowInsecureAuth = o.tls == nil // AUTH only after TLS when TLS exists
	s.ErrorLog = quiet{}
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	var l net.Listener
	var err error
	if o.implicit {
		l, err = tls.Listen("tcp", "127.0.0.1:0", o.tls)
	} else {
		l, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(l) }()
	t.Cleanup(func() { _ = s.Close() })
	ms.host = "127.0.0.1"
	ms.port = l.Addr().(*net.TCPAddr).Port
	return ms
}

// selfSigned makes a certificate for 127.0.0.1 and writes it, as the CA
// to trust, to a file.
func selfSigned(t *testing.T) (*tls.Config, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mb test SMTP"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, caFile
}

func channel(t *testing.T, s *mailServer, extra string) notify.Channel {
	t.Helper()
	return notifytest.Parse(t, types, fmt.Sprintf("type: email\nsmtp_server: %s\nport: %d\nsender: 'mb monitor <mb@example.org>'\nrecipients: [ops@example.org, oncall@example.org]\n%s", s.host, s.port, extra))
}

func TestPlainDeliveryComposesTheMessage(t *testing.T) {
	s := startServer(t, serverOpts{})
	ch := channel(t, s, "tls: none\n")
	m := notifytest.Alert()
	m.Text = "cpu_percent is 97.5 (> 90) — très chargé"
	if err := ch.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	got := s.mails()
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
	cfg, caFile := selfSigned(t)
	s := startServer(t, serverOpts{tls: cfg, requireAuth: true})
	ch := channel(t, s, fmt.Sprintf("user: mb\npassword: %q\nca_file: %s\n", password, caFile))
	if err := ch.Send(context.Background(), notifytest.Alert()); err != nil {
		t.Fatal(err)
	}
	if got := s.mails(); len(got) != 1 || !got[0].TLS || got[0].User != "mb" {
		t.Fatalf("%+v", got)
	}
}

func TestImplicitTLSWithAuthLogin(t *testing.T) {
	cfg, caFile := selfSigned(t)
	s := startServer(t, serverOpts{tls: cfg, implicit: true, requireAuth: true})
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ch := channel(t, s, fmt.Sprintf("tls: tls\nauth: login\nuser: mb\npassword_file: %s\nca_file: %s\n", pwFile, caFile))
	if err := ch.Send(context.Background(), notifytest.Alert()); err != nil {
		t.Fatal(err)
	}
	if got := s.mails(); len(got) != 1 || !got[0].TLS || got[0].User != "mb" {
		t.Fatalf("%+v", got)
	}
}

func TestWrongPasswordIsPermanentAndNeverShown(t *testing.T) {
	cfg, caFile := selfSigned(t)
	s := startServer(t, serverOpts{tls: cfg, requireAuth: true})
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
	if len(s.mails()) != 0 {
		t.Fatal("delivered without auth")
	}
}

func TestMissingSTARTTLSAndUntrustedCertificateArePermanent(t *testing.T) {
	plain := startServer(t, serverOpts{})
	err := channel(t, plain, "").Send(context.Background(), notifytest.Alert())
	if err == nil || !notify.IsPermanent(err) || !strings.Contains(err.Error(), "does not offer STARTTLS") {
		t.Fatal(err)
	}
	cfg, _ := selfSigned(t)
	tlsServer := startServer(t, serverOpts{tls: cfg})
	err = channel(t, tlsServer, "").Send(context.Background(), notifytest.Alert())
	if err == nil || !notify.IsPermanent(err) || !strings.Contains(err.Error(), "certificate") {
		t.Fatal(err)
	}
	if len(plain.mails())+len(tlsServer.mails()) != 0 {
		t.Fatal("sent in the clear or to an untrusted server")
	}
}

func TestTemporaryRefusalAndDownServerAreRetried(t *testing.T) {
	s := startServer(t, serverOpts{rcptErr: &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}})
	err := channel(t, s, "tls: none\n").Send(context.Background(), notifytest.Alert())
	if err == nil || notify.IsPermanent(err) || !strings.Contains(err.Error(), "451") {
		t.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	down := &mailServer{host: "127.0.0.1", port: port}
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

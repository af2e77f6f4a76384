// Package smtptest runs a real SMTP server (github.com/emersion/go-smtp)
// on a loopback port for tests: plain, STARTTLS or implicit TLS, with or
// without required AUTH (PLAIN and LOGIN), recording every mail it
// accepts and able to refuse mail on demand (for outbox and retry tests).
package smtptest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Options configure a Server.
type Options struct {
	// TLS, if set, is offered as STARTTLS, or used for the whole
	// connection when Implicit is set. AUTH is then only offered after
	// TLS.
	TLS      *tls.Config
	Implicit bool
	// User and Password, if set, are required (AUTH before MAIL).
	User, Password string
}

// Mail is one accepted message.
type Mail struct {
	From string
	To   []string
	Data []byte // as received, headers and body
	User string // who authenticated, "" if nobody
	TLS  bool   // whether the session was encrypted
}

// Header returns a header of the message, MIME-decoded.
func (m Mail) Header(name string) string {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return ""
	}
	v, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get(name))
	if err != nil {
		return msg.Header.Get(name)
	}
	return v
}

// Text returns the message's body, decoded if quoted-printable.
func (m Mail) Text() string {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return ""
	}
	var r io.Reader = msg.Body
	if msg.Header.Get("Content-Transfer-Encoding") == "quoted-printable" {
		r = quotedprintable.NewReader(r)
	}
	b, _ := io.ReadAll(r)
	return string(b)
}

// Server is a running SMTP server.
type Server struct {
	Host string
	Port int

	opts   Options
	srv    *smtp.Server
	mu     sync.Mutex
	mails  []Mail
	refuse *smtp.SMTPError
}

// Start starts a server on 127.0.0.1, closed when the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	s := &Server{opts: o, Host: "127.0.0.1"}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{srv: s, conn: c}, nil
	}))
	s.srv.Domain = "mx.test"
	s.srv.TLSConfig = o.TLS
	s.srv.AllowInsecureAuth = o.TLS == nil
	s.srv.ErrorLog = quiet{}
	s.srv.ReadTimeout, s.srv.WriteTimeout = 30*time.Second, 30*time.Second
	var l net.Listener
	var err error
	if o.Implicit {
		l, err = tls.Listen("tcp", "127.0.0.1:0", o.TLS)
	} else {
		l, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	s.Port = l.Addr().(*net.TCPAddr).Port
	go func() { _ = s.srv.Serve(l) }()
	t.Cleanup(func() { _ = s.srv.Close() })
	return s
}

// Addr is host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Mails returns the mails accepted so far.
func (s *Server) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mails...)
}

// Refuse makes the server answer MAIL FROM with code (4xx: try later,
// 5xx: refused) and message; Refuse(0, "") accepts again.
func (s *Server) Refuse(code int, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if code == 0 {
		s.refuse = nil
		return
	}
	enh := smtp.EnhancedCode{code / 100, 0, 0}
	s.refuse = &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: message}
}

// Wait polls until at least n mails arrived or timeout passes, and
// returns the mails.
func (s *Server) Wait(t testing.TB, n int, timeout time.Duration) []Mail {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m := s.Mails(); len(m) >= n || time.Now().After(deadline) {
			if len(m) < n {
				t.Fatalf("smtptest: %d mails after %s, want %d", len(m), timeout, n)
			}
			return m
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type session struct {
	srv  *Server
	conn *smtp.Conn
	cur  Mail
}

// AuthMechanisms implements smtp.AuthSession.
func (s *session) AuthMechanisms() []string { return []string{sasl.Plain, sasl.Login} }

// Auth implements smtp.AuthSession, checking Options.User and Password.
func (s *session) Auth(mech string) (sasl.Server, error) {
	check := func(user, pass string) error {
		if s.srv.opts.User == "" || user != s.srv.opts.User || pass != s.srv.opts.Password {
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

// Mail implements smtp.Session: refused while Refuse is in force, or
// before AUTH when a user is required.
func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.srv.mu.Lock()
	refuse := s.srv.refuse
	s.srv.mu.Unlock()
	if refuse != nil {
		return refuse
	}
	if s.srv.opts.User != "" && s.cur.User == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	s.cur.From = from
	return nil
}

// Rcpt implements smtp.Session.
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.cur.To = append(s.cur.To, to)
	return nil
}

// Data implements smtp.Session, recording the mail.
func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.Data = b
	_, s.cur.TLS = s.conn.TLSConnectionState()
	s.srv.mu.Lock()
	s.srv.mails = append(s.srv.mails, s.cur)
	s.srv.mu.Unlock()
	return nil
}

// Reset implements smtp.Session; authentication survives it.
func (s *session) Reset() { s.cur = Mail{User: s.cur.User} }

// Logout implements smtp.Session.
func (s *session) Logout() error { return nil }

// loginServer is the server side of AUTH LOGIN, which go-sasl lacks.
type loginServer struct {
	check func(user, pass string) error
	user  string
	step  int
}

// Next implements sasl.Server.
func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	l.step++
	switch l.step {
	case 1:
		if resp != nil { // initial response carries the user name
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

// SelfSigned makes a certificate for 127.0.0.1, valid for an hour, and
// writes it, as the CA to trust (an email channel's ca_file), to a file in
// a temporary directory.
func SelfSigned(t testing.TB) (cfg *tls.Config, caFile string) {
	cfg, caFile, _ = SelfSignedFiles(t)
	return cfg, caFile
}

// SelfSignedFiles is SelfSigned that also writes the private key (PEM),
// for servers started as separate processes.
func SelfSignedFiles(t testing.TB) (cfg *tls.Config, certFile, keyFile string) {
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
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, certFile, keyFile
}

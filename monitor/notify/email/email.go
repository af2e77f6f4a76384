// Package email sends notifications by SMTP: STARTTLS on the submission
// port (587) by default, implicit TLS (465) or, on request, a plain
// connection; AUTH PLAIN, LOGIN or CRAM-MD5 when a user is given (PLAIN
// and LOGIN only over TLS or to the local machine). The message is
// text/plain UTF-8 with a Message-ID made from the notification's ID, so a
// retry after an uncertain failure is recognisable as the same mail.
package email

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mbvm/mb/monitor/notify"
)

// Type is the `type:` value of this channel.
const Type = "email"

// TLS modes.
const (
	StartTLS = "starttls" // plain connection upgraded with STARTTLS, required
	Implicit = "tls"      // TLS from the first byte (port 465)
	NoTLS    = "none"     // no encryption at all
)

// Auth mechanisms.
const (
	AuthPlain   = "plain"
	AuthLogin   = "login"
	AuthCRAMMD5 = "cram-md5"
)

// Config is an email channel's settings (hbd's names: smtp_server, port,
// user, password, sender, recipients).
type Config struct {
	Server     string
	Port       int
	TLS        string // StartTLS, Implicit or NoTLS
	User       string
	Password   notify.Secret
	Auth       string // AuthPlain (default), AuthLogin or AuthCRAMMD5; used when User is set
	Sender     string
	Recipients []string
	// RootCAs, if set, are the only CAs trusted for the server's
	// certificate (ca_file); nil means the system's.
	RootCAs *x509.CertPool
	CAFile  string
}

// Channel is a configured email channel.
type Channel struct {
	name string
	cfg  Config
}

// New returns an email channel.
func New(name string, cfg Config) *Channel { return &Channel{name: name, cfg: cfg} }

// Parse reads an email entry: smtp_server, port, tls (starttls, tls or
// none), user, password (or password_file), auth (plain, login,
// cram-md5), sender (default: the user, when it is an address),
// recipients (one or a list), ca_file.
func Parse(name string, f *notify.Fields) (notify.Channel, error) {
	cfg := Config{
		Server:     f.String("smtp_server|host", notify.Required),
		TLS:        f.OneOf("tls", "", StartTLS, Implicit, NoTLS),
		User:       f.String("user|username", notify.Optional),
		Password:   f.Secret("password", notify.Optional),
		Auth:       f.OneOf("auth", AuthPlain, AuthPlain, AuthLogin, AuthCRAMMD5),
		Sender:     f.String("sender|from", notify.Optional),
		Recipients: f.Strings("recipients|to", notify.Required),
		CAFile:     f.String("ca_file", notify.Optional),
	}
	cfg.Port = f.Int("port", 0, 1, 65535)
	switch {
	case cfg.TLS == "" && cfg.Port == 465:
		cfg.TLS = Implicit
	case cfg.TLS == "":
		cfg.TLS = StartTLS
	}
	if cfg.Port == 0 {
		cfg.Port = map[string]int{StartTLS: 587, Implicit: 465, NoTLS: 25}[cfg.TLS]
	}
	if cfg.User != "" && !cfg.Password.IsSet() {
		f.Fail("password", "missing; logging in as %s needs it (or password_file)", cfg.User)
	}
	if cfg.Password.IsSet() && cfg.User == "" {
		f.Fail("user", "missing; a password is given but no user to log in as")
	}
	if cfg.Sender == "" {
		// hbd's own example has none: it sends as the login user.
		if _, err := mail.ParseAddress(cfg.User); err == nil {
			cfg.Sender = cfg.User
		} else {
			f.Fail("sender", "missing; give the From address (the user is not an e-mail address to default to)")
		}
	} else {
		if _, err := mail.ParseAddress(cfg.Sender); err != nil {
			f.Fail("sender", "%q is not an e-mail address", cfg.Sender)
		}
	}
	for _, r := range cfg.Recipients {
		if _, err := mail.ParseAddress(r); err != nil {
			f.Fail("recipients", "%q is not an e-mail address", r)
		}
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			f.Fail("ca_file", "cannot read it: %v", err)
		} else {
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				f.Fail("ca_file", "%s holds no PEM certificate", cfg.CAFile)
			}
		}
	}
	return New(name, cfg), nil
}

// Name implements notify.Channel.
func (c *Channel) Name() string { return c.name }

// Type implements notify.Channel.
func (c *Channel) Type() string { return Type }

// String names the channel without its configuration.
func (c *Channel) String() string { return Type + " channel " + c.name }

// Redacted implements notify.Redactor.
func (c *Channel) Redacted() map[string]any {
	return map[string]any{"smtp_server": c.cfg.Server, "port": c.cfg.Port, "tls": c.cfg.TLS, "user": c.cfg.User,
		"password": c.cfg.Password.String(), "auth": c.cfg.Auth, "sender": c.cfg.Sender, "recipients": c.cfg.Recipients, "ca_file": c.cfg.CAFile}
}

// Send implements notify.Channel: one SMTP session delivering m to every
// recipient.
func (c *Channel) Send(ctx context.Context, m notify.Message) error {
	err := c.send(ctx, m)
	if err == nil {
		return nil
	}
	perm := permanent(ctx, err)
	err = fmt.Errorf("email via %s:%d: %s", c.cfg.Server, c.cfg.Port, notify.Scrub(err.Error(), c.cfg.Password))
	if perm {
		return notify.Permanent(err)
	}
	return err
}

// classified wraps an error that is known to be permanent.
type classified struct{ error }

func permanent(ctx context.Context, err error) bool {
	var c classified
	return ctx.Err() == nil && errors.As(err, &c)
}

func (c *Channel) send(ctx context.Context, m notify.Message) (err error) {
	addr := net.JoinHostPort(c.cfg.Server, strconv.Itoa(c.cfg.Port))
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	tlsCfg := &tls.Config{ServerName: c.cfg.Server, RootCAs: c.cfg.RootCAs, MinVersion: tls.VersionTLS12}
	if c.cfg.TLS == Implicit {
		tc := tls.Client(conn, tlsCfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return classify(fmt.Errorf("TLS: %w", err))
		}
		conn = tc
	}
	cl, err := smtp.NewClient(conn, c.cfg.Server)
	if err != nil {
		conn.Close()
		return classify(err)
	}
	defer cl.Close()
	if err := cl.Hello(heloName()); err != nil {
		return classify(fmt.Errorf("EHLO: %w", err))
	}
	if c.cfg.TLS == StartTLS {
		if ok, _ := cl.Extension("STARTTLS"); !ok {
			return classified{errors.New("the server does not offer STARTTLS; use tls: tls for port 465, or tls: none to send unencrypted")}
		}
		if err := cl.StartTLS(tlsCfg); err != nil {
			return classify(fmt.Errorf("STARTTLS: %w", err))
		}
	}
	if c.cfg.User != "" {
		if ok, _ := cl.Extension("AUTH"); !ok {
			return classified{errors.New("the server does not offer AUTH, but a user is configured")}
		}
		if err := cl.Auth(c.auth()); err != nil {
			return classify(fmt.Errorf("AUTH %s as %s: %w", strings.ToUpper(c.cfg.Auth), c.cfg.User, err))
		}
	}
	if err := cl.Mail(bareAddress(c.cfg.Sender)); err != nil {
		return classify(fmt.Errorf("MAIL FROM: %w", err))
	}
	for _, r := range c.cfg.Recipients {
		if err := cl.Rcpt(bareAddress(r)); err != nil {
			return classify(fmt.Errorf("RCPT TO %s: %w", r, err))
		}
	}
	w, err := cl.Data()
	if err != nil {
		return classify(fmt.Errorf("DATA: %w", err))
	}
	if _, err := w.Write(Compose(c.cfg.Sender, c.cfg.Recipients, m)); err != nil {
		return classify(fmt.Errorf("DATA: %w", err))
	}
	if err := w.Close(); err != nil {
		return classify(fmt.Errorf("DATA: %w", err))
	}
	_ = cl.Quit() // the message is accepted; a failed QUIT changes nothing
	return nil
}

// classify marks SMTP 5xx answers and certificate problems as permanent.
func classify(err error) error {
	var tp *textproto.Error
	if errors.As(err, &tp) && tp.Code >= 500 {
		return classified{err}
	}
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	if errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) {
		return classified{err}
	}
	if strings.Contains(err.Error(), "unencrypted connection") { // net/smtp refusing PLAIN in the clear
		return classified{err}
	}
	return err
}

func (c *Channel) auth() smtp.Auth {
	switch c.cfg.Auth {
	case AuthCRAMMD5:
		return smtp.CRAMMD5Auth(c.cfg.User, c.cfg.Password.Reveal())
	case AuthLogin:
		return &loginAuth{user: c.cfg.User, password: c.cfg.Password, host: c.cfg.Server}
	}
	return smtp.PlainAuth("", c.cfg.User, c.cfg.Password.Reveal(), c.cfg.Server)
}

// loginAuth is the LOGIN mechanism (what many providers still ask for),
// refused like PLAIN over an unencrypted connection to another machine.
type loginAuth struct {
	user     string
	password notify.Secret
	host     string
}

// Start implements smtp.Auth.
func (a *loginAuth) Start(server *smtp.ServerInfo) (string, []byte, error) {
	if !server.TLS && !isLocal(server.Name) {
		return "", nil, errors.New("unencrypted connection")
	}
	if server.Name != a.host {
		return "", nil, errors.New("wrong host name")
	}
	return "LOGIN", nil, nil
}

// Next implements smtp.Auth: the user name, then the password.
func (a *loginAuth) Next(fromServer []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	switch p := strings.ToLower(strings.TrimSpace(string(fromServer))); {
	case strings.HasPrefix(p, "user"):
		return []byte(a.user), nil
	case strings.HasPrefix(p, "pass"):
		return []byte(a.password.Reveal()), nil
	}
	return nil, fmt.Errorf("unexpected LOGIN challenge %q", fromServer)
}

// heloName is the name mb greets the server with: the machine's name when
// it is fully qualified (strict servers refuse a bare "localhost"),
// otherwise "localhost".
func heloName() string {
	if h, err := os.Hostname(); err == nil && strings.Contains(h, ".") && !strings.ContainsAny(h, " \r\n") {
		return h
	}
	return "localhost"
}

func isLocal(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

// bareAddress is the address part of "Name <addr>" (already validated).
func bareAddress(s string) string {
	if a, err := mail.ParseAddress(s); err == nil {
		return a.Address
	}
	return s
}

// Compose builds the message: headers and a quoted-printable UTF-8 body.
func Compose(from string, to []string, m notify.Message) []byte {
	at := m.Time
	if at.IsZero() {
		at = time.Now()
	}
	var b strings.Builder
	header := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	header("From", from)
	header("To", strings.Join(to, ", "))
	header("Subject", mime.QEncoding.Encode("utf-8", oneLine(m.Subject())))
	header("Date", at.Format(time.RFC1123Z))
	header("Message-ID", "<"+idPart(m.ID)+"@mb-monitor>")
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	header("Auto-Submitted", "auto-generated")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(strings.ReplaceAll(bodyText(m, at), "\n", "\r\n")))
	_ = qp.Close()
	b.WriteString("\r\n")
	return []byte(b.String())
}

func bodyText(m notify.Message, at time.Time) string {
	var b strings.Builder
	b.WriteString(m.Body() + "\n\n")
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%-9s %s\n", k+":", v)
		}
	}
	row("Host", m.Host)
	check := m.Field
	if m.Plugin != "" {
		check = m.Plugin + "." + m.Field
	}
	row("Check", check)
	level := string(m.Level)
	if m.Previous != "" {
		level = string(m.Previous) + " -> " + level
	}
	row("State", level)
	row("Value", m.Value)
	row("Time", at.UTC().Format(time.RFC3339))
	return b.String()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// idPart keeps the characters a Message-ID's left part may hold.
func idPart(id string) string {
	out := strings.Map(func(r rune) rune {
		if r < 128 && (r == '-' || r == '.' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return r
		}
		return -1
	}, id)
	if out == "" {
		out = notify.NewID()
	}
	return out
}

package email_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mbvm/mb/internal/testenv"
	"github.com/mbvm/mb/monitor/notify/notifytest"
	"github.com/mbvm/mb/monitor/notify/notifytest/smtptest"
)

// aiosmtpd starts Debian's python3-aiosmtpd as a separate process on a
// loopback port, storing what it accepts in a Maildir, and returns the
// port and the Maildir's "new" folder. args select STARTTLS or SMTPS.
func aiosmtpd(t *testing.T, args ...string) (port int, maildirNew string) {
	t.Helper()
	py := "/usr/bin/python3" // Debian's interpreter, where python3-aiosmtpd installs
	if err := exec.Command(py, "-c", "import aiosmtpd").Run(); err != nil {
		testenv.Need(t, fmt.Sprintf("python3-aiosmtpd is not installed (apt-get install python3-aiosmtpd): %v", err))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	maildir := filepath.Join(t.TempDir(), "Maildir")
	ctx, cancel := context.WithCancel(context.Background())
	argv := append([]string{"-m", "aiosmtpd", "-n", "-l", fmt.Sprintf("127.0.0.1:%d", port), "-c", "aiosmtpd.handlers.Mailbox"}, args...)
	cmd := exec.CommandContext(ctx, py, append(argv, maildir)...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("aiosmtpd did not start: %s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return port, filepath.Join(maildir, "new")
}

func readMaildir(t *testing.T, dir string) []string {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// TestDebianAiosmtpdStartTLSAndSMTPS delivers through Debian's aiosmtpd,
// once with STARTTLS (which it then requires) and once with implicit TLS.
func TestDebianAiosmtpdStartTLSAndSMTPS(t *testing.T) {
	_, cert, key := smtptest.SelfSignedFiles(t)
	for _, c := range []struct {
		name, tls string
		args      []string
	}{
		{"starttls", "starttls", []string{"--tlscert", cert, "--tlskey", key}},
		{"smtps", "tls", []string{"--smtpscert", cert, "--smtpskey", key}},
	} {
		t.Run(c.name, func(t *testing.T) {
			port, maildir := aiosmtpd(t, c.args...)
			ch := notifytest.Parse(t, types, fmt.Sprintf("type: email\nsmtp_server: 127.0.0.1\nport: %d\ntls: %s\nca_file: %s\nsender: mb@example.org\nrecipients: ops@example.org\n", port, c.tls, cert))
			if err := ch.Send(context.Background(), notifytest.Alert()); err != nil {
				t.Fatal(err)
			}
			mails := readMaildir(t, maildir)
			if len(mails) != 1 {
				t.Fatalf("%d mails in the Maildir", len(mails))
			}
			for _, want := range []string{"Subject: [mb] CRITICAL web-01 cpu_monitor.cpu_percent", "Message-ID: <0123456789abcdef@mb-monitor>", "To: ops@example.org", "cpu_percent is 97.5 (> 90)"} {
				if !strings.Contains(mails[0], want) {
					t.Fatalf("the mail lacks %q:\n%s", want, mails[0])
				}
			}
		})
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

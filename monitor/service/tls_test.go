package service

import (
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSelfSignedTLS: tls: self-signed serves HTTPS with a certificate kept
// (0600) in the state directory, the session cookie is Secure, and plain
// HTTP gets no answer; a restart keeps the certificate.
func TestSelfSignedTLS(t *testing.T) {
	hook := newHookServer(t)
	dir := t.TempDir()
	cfg := "tls: self-signed\n" + usersConfig(t, hook.URL)
	s := start(t, dir, cfg)
	for _, f := range []string{"cert.pem", "key.pem"} {
		fi, err := os.Stat(filepath.Join(dir, "state", TLSDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	cert, _ := os.ReadFile(filepath.Join(dir, "state", TLSDir, "cert.pem"))
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := hc.Post("https://"+s.Addr().String()+"/api/0/auth/login", "application/json", strings.NewReader(`{"username":"alice","password":"alice-pw"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var secure bool
	for _, c := range resp.Cookies() {
		secure = secure || (c.Name == SessionCookie && c.Secure)
	}
	if resp.StatusCode != 200 || !secure {
		t.Fatalf("login over TLS: %d, Secure cookie %v", resp.StatusCode, secure)
	}
	if resp, err := http.Get("http://" + s.Addr().String() + "/login"); err == nil && resp.StatusCode == 200 {
		t.Fatal("plain HTTP served on a TLS listener")
	}
	s.stop()
	start(t, dir, cfg)
	again, _ := os.ReadFile(filepath.Join(dir, "state", TLSDir, "cert.pem"))
	if string(again) != string(cert) {
		t.Error("a restart made a new certificate")
	}
}

// TestPlainHTTPOnNetworkRefused: a non-loopback listen with users but
// without TLS is refused unless allow_plain_http is set.
func TestPlainHTTPOnNetworkRefused(t *testing.T) {
	hook := newHookServer(t)
	cfg := strings.Replace(usersConfig(t, hook.URL), "127.0.0.1:0", "0.0.0.0:0", 1)
	dir := t.TempDir()
	path := writeConfig(t, dir, cfg)
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "plain HTTP") {
		t.Fatalf("plain HTTP on 0.0.0.0: %v", err)
	}
	writeConfig(t, dir, "allow_plain_http: true\n"+cfg)
	if _, err := LoadConfig(path); err != nil {
		t.Fatalf("with allow_plain_http: %v", err)
	}
}

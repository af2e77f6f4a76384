package sshkeys

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"
)

// ErrHostKeyMismatch means the guest presented a host key other than the
// injected one.
var ErrHostKeyMismatch = errors.New("SSH host key does not match the key mb injected")

// Probe does one real SSH handshake with the guest at 127.0.0.1:port: the
// guest must present exactly the injected host key and accept the client
// key for user. It returns nil when both hold. It opens no session.
func Probe(ctx context.Context, k *Keys, user string, port int) error {
	if user == "" {
		user = DefaultUser
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("connect to SSH at %s: %w", addr, err)
	}
	defer conn.Close()
	// The handshake has no context of its own: bound it by the context's
	// deadline and close the connection when the context ends.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	want := k.HostKey()
	cfg := &ssh.ClientConfig{
		User: user,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(k.ClientSigner())},
		HostKeyCallback: func(_ string, _ net.Addr, got ssh.PublicKey) error {
			if got.Type() != want.Type() || string(got.Marshal()) != string(want.Marshal()) {
				return fmt.Errorf("%w: got %s %s, want %s", ErrHostKeyMismatch, got.Type(), ssh.FingerprintSHA256(got), ssh.FingerprintSHA256(want))
			}
			return nil
		},
		HostKeyAlgorithms: []string{want.Type()},
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("SSH handshake with %s: %w", addr, ctx.Err())
		}
		// The connection's deadline is the context's: it may fire a hair
		// before the context reports it.
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			return fmt.Errorf("SSH handshake with %s: %w", addr, context.DeadlineExceeded)
		}
		return fmt.Errorf("SSH handshake with %s as %q: %w", addr, user, err)
	}
	go ssh.DiscardRequests(reqs)
	go func() {
		for ch := range chans {
			_ = ch.Reject(ssh.Prohibited, "no channels")
		}
	}()
	return c.Close()
}

// WaitReady probes every interval until a handshake succeeds or ctx ends;
// the error then names the last failure. A guest's sshd is commonly not up
// yet, or up before cloud-init has installed the key, so every failure is
// retried.
func WaitReady(ctx context.Context, k *Keys, user string, port int, interval time.Duration) error {
	if interval <= 0 {
		interval = time.Second
	}
	var last error
	for {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := Probe(pctx, k, user, port)
		cancel()
		if err == nil {
			return nil
		}
		last = err
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("SSH on 127.0.0.1:%d not ready (%w); last attempt: %v", port, ctx.Err(), last)
		case <-t.C:
		}
	}
}

// ProbeVM loads the keys in the VM directory dir and probes the guest's
// SSH on 127.0.0.1:port as user (DefaultUser when empty): the readiness
// check for an image that has SSH but no agent.
func ProbeVM(ctx context.Context, dir, user string, port int) error {
	k, err := Load(dir)
	if err != nil {
		return err
	}
	return Probe(ctx, k, user, port)
}

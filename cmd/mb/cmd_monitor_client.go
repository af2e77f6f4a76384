package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/mbvm/mb/daemon"
)

// monitorPasswordEnv holds the password for --user.
const monitorPasswordEnv = "MB_MONITOR_PASSWORD"

// monitorTarget is where `mb monitor` commands send their requests: the
// daemon over mb.sock (the default) or a monitor's TCP listener (--url).
type monitorTarget struct {
	url  string
	user string
}

// monClient calls a monitor's /api/0/.
type monClient struct {
	base       string // http://host:port or http://mb.sock
	hc         *http.Client
	user, pass string
	where      string // for messages
}

// monitorClient connects to the monitor named by the flags.
func (a *app) monitorClient(ctx context.Context, t *monitorTarget) (*monClient, error) {
	if t.url != "" {
		u, err := url.Parse(t.url)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return nil, usagef("--url %q: give the monitor's address as http://HOST:PORT (or https://), without a path or credentials (use --user and $%s)", t.url, monitorPasswordEnv)
		}
		c := &monClient{base: u.Scheme + "://" + u.Host, hc: &http.Client{Timeout: 2 * time.Minute}, where: u.Host}
		if t.user != "" {
			c.user = t.user
			c.pass = os.Getenv(monitorPasswordEnv)
			if c.pass == "" {
				return nil, usagef("--user %s: set $%s to the user's password", t.user, monitorPasswordEnv)
			}
		}
		return c, nil
	}
	if t.user != "" {
		return nil, usagef("--user goes with --url: over mb.sock the daemon knows who you are")
	}
	if _, err := a.daemonClient(ctx); err != nil {
		return nil, err
	}
	h, err := mbHome()
	if err != nil {
		return nil, err
	}
	sock := daemon.SocketPath(h)
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	return &monClient{base: "http://mb.sock", hc: &http.Client{Transport: tr, Timeout: 2 * time.Minute}, where: sock}, nil
}

// call sends a request to /api/0/PATH (body, when not nil, as JSON) and
// returns the reply body; an error reply becomes an error with its
// message.
func (c *monClient) call(ctx context.Context, method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+"/api/0/"+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("monitor at %s: %w", c.where, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("monitor at %s: %w", c.where, err)
	}
	if resp.StatusCode/100 == 2 {
		return data, nil
	}
	var e struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(string(data))
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, fmt.Errorf("monitor at %s: %s (give --user NAME and the password in $%s)", c.where, msg, monitorPasswordEnv)
	case resp.StatusCode == http.StatusNotFound && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json"):
		return nil, fmt.Errorf("monitor at %s: the server has no monitor API at /api/0/%s (%s)", c.where, path, msg)
	}
	return nil, errors.New(msg)
}

// get calls and decodes the reply into out.
func (c *monClient) get(ctx context.Context, path string, out any) ([]byte, error) {
	data, err := c.call(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return nil, fmt.Errorf("monitor at %s: reply to %s: %w", c.where, path, err)
		}
	}
	return data, nil
}

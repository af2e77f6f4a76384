package heartbeat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"time"

	"github.com/mbvm/mb/internal/hbcwire"
)

// Limits of an obeyed order.
const (
	orderTimeout  = 5 * time.Minute
	maxOrderOut   = 8 << 10
	maxInstallSh  = 1 << 20
	seenRetention = 2 * maxSkew
)

// order decides about a CMD or UPD from the server and, when it passes
// every check, carries it out in the background. Every decision is logged.
func (c *Client) order(p *peer, m *hbcwire.Message) {
	kind, flag, allowed := "command", "--allow-commands", c.o.AllowCommands
	if m.ID == hbcwire.UPD {
		kind, flag, allowed = "update", "--allow-update", c.o.AllowUpdate
	}
	id := m.String("id")
	log := c.log.With("from", p.addr.String(), "id", id, "kind", m.ID)
	if !allowed {
		log.Warn("ignored a " + kind + " from the server: mb-agent runs without " + flag)
		return
	}
	if err := m.Verify(c.key); err != nil {
		log.Warn("refused a "+kind+" that is not signed with the shared hmac_key", "err", err)
		return
	}
	ts, err := m.Float("timestamp")
	if err != nil || time.Since(time.Unix(0, int64(ts*1e9))).Abs() > maxSkew {
		log.Warn("refused a signed "+kind+" whose timestamp is missing or over 5 minutes off (a replay, or a clock to fix)", "timestamp", ts)
		return
	}
	if id == "" {
		log.Warn("refused a signed " + kind + " without an id")
		return
	}
	c.mu.Lock()
	for k, t := range c.seen {
		if time.Since(t) > seenRetention {
			delete(c.seen, k)
		}
	}
	_, dup := c.seen[m.ID+"\x00"+id]
	if !dup {
		c.seen[m.ID+"\x00"+id] = time.Now()
	}
	c.mu.Unlock()
	if dup {
		log.Info("ignored a repeated " + kind + " (already carried out)")
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		var code int
		var out string
		if m.ID == hbcwire.CMD {
			cmd := m.String("command")
			log.Info("running a signed command from the server", "command", cmd)
			code, out = runShell(cmd, nil)
		} else {
			u := m.String("url")
			log.Info("running a signed self-update from the server", "url", u)
			code, out = update(u)
		}
		log.Info(kind+" finished", "exit_code", code)
		reply := hbcwire.New(hbcwire.PLG).Add("name", c.o.Name).Add("plugin", kind).
			Add("timestamp", unixSeconds(time.Now())).Add("id", id).Add("exit_code", code).Add("output", out)
		c.broadcast(reply)
	}()
}

// runShell runs script with /bin/sh -c (or, with file, /bin/sh file) and
// returns its exit code (-1 when it did not run) and the start of its
// output.
func runShell(script string, file *string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), orderTimeout)
	defer cancel()
	args := []string{"-c", script}
	if file != nil {
		args = []string{*file}
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", args...)
	var out bytes.Buffer
	w := &capped{b: &out, n: maxOrderOut}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &ee) && ee.Exited():
		return ee.ExitCode(), out.String()
	default:
		return -1, fmt.Sprintf("%s(did not run to its end: %v)", out.String(), err)
	}
}

// update fetches an installer script over http(s) and runs it.
func update(raw string) (int, string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return -1, fmt.Sprintf("update url %q is not an http(s) URL", raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return -1, err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1, fmt.Sprintf("fetch the installer: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return -1, fmt.Sprintf("fetch the installer: status %d", resp.StatusCode)
	}
	script, err := io.ReadAll(io.LimitReader(resp.Body, maxInstallSh+1))
	if err != nil || len(script) > maxInstallSh {
		return -1, fmt.Sprintf("fetch the installer: %v (at most %d bytes)", err, maxInstallSh)
	}
	f, err := os.CreateTemp("", "mb-agent-update-*.sh")
	if err != nil {
		return -1, err.Error()
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(script); err != nil {
		f.Close()
		return -1, err.Error()
	}
	f.Close()
	name := f.Name()
	return runShell("", &name)
}

type capped struct {
	b *bytes.Buffer
	n int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.n - c.b.Len(); room > 0 {
		c.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "unknown"
	}
	return h
}

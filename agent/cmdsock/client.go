package cmdsock

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"time"
)

// maxReply bounds what Send reads back.
const maxReply = 16 << 20

// Send writes req, unchanged, to the command socket at path and returns
// everything the server writes before it closes the connection: one JSON
// reply. The request is not validated; the server answers bad JSON with
// status 102. The reply is read while the request is still being written,
// so a request the server refuses early (over 1 MiB) still gets its reply.
func Send(ctx context.Context, path string, req []byte) ([]byte, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("command socket: %w (is mb-agent running with --command-socket %s?)", err, path)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(req)
		werr <- err
	}()
	b, rerr := io.ReadAll(io.LimitReader(c, maxReply))
	c.Close() // ends a write the server stopped reading
	if err := <-werr; err != nil && len(b) == 0 {
		return nil, fmt.Errorf("command socket %s: sending: %w", path, err)
	}
	if rerr != nil && len(b) == 0 {
		return nil, fmt.Errorf("command socket %s: reading the reply: %w", path, rerr)
	}
	return b, nil
}

// StatusOf returns the Status of an encoded reply.
func StatusOf(reply []byte) (int, error) {
	var r struct{ Status *int }
	if err := json.Unmarshal(reply, &r); err != nil {
		return 0, fmt.Errorf("reply is not JSON: %w", err)
	}
	if r.Status == nil {
		return 0, fmt.Errorf("reply has no Status")
	}
	return *r.Status, nil
}

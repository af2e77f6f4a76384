package fleet

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mbvm/mb/internal/hbcwire"
)

// queued is a CMD or UPD waiting for its host's next heartbeat.
type queued struct {
	id, kind, command, url string
	at                     time.Time
}

func (q queued) message() *hbcwire.Message {
	m := hbcwire.New(q.kind).Add("id", q.id)
	if q.kind == hbcwire.CMD {
		m.Add("command", q.command)
	} else {
		m.Add("url", q.url)
	}
	return m.Add("timestamp", unixSeconds(time.Now()))
}

// Errors of QueueCommand and QueueUpdate.
var (
	ErrNotHBC     = errors.New("not an hbc host: commands go out in answer to hbc heartbeats")
	ErrNoHMACKey  = errors.New("no hmac_key in monitor.yaml: clients obey only signed commands (an unsigned one could be forged), so none is queued")
	ErrQueueFull  = fmt.Errorf("too many commands queued for the host (at most %d until its next heartbeat)", maxQueued)
	ErrBadCommand = errors.New("give a command of 1 to 4096 characters")
	ErrNoHost     = errors.New("no such fleet host")
)

// QueueCommand queues a command for an hbc host; it goes out (signed) in
// answer to the host's next heartbeat. It returns the command's id.
func (f *Fleet) QueueCommand(host, command string) (string, error) {
	if command == "" || len(command) > 4096 || strings.ContainsAny(command, "\x00") {
		return "", ErrBadCommand
	}
	return f.enqueue(host, queued{kind: hbcwire.CMD, command: command})
}

// QueueUpdate asks an hbc host to update itself from url (install.sh).
func (f *Fleet) QueueUpdate(host, url string) (string, error) {
	if url == "" || len(url) > 2048 {
		return "", errors.New("give the installer's URL")
	}
	return f.enqueue(host, queued{kind: hbcwire.UPD, url: url})
}

func (f *Fleet) enqueue(host string, q queued) (string, error) {
	if f.set.Load().HMACKey == nil {
		return "", ErrNoHMACKey
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	q.id, q.at = hex.EncodeToString(b[:]), f.clock()
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.hosts[host]
	if h == nil {
		return "", fmt.Errorf("%q: %w", host, ErrNoHost)
	}
	if !h.hbc {
		return "", fmt.Errorf("%q: %w", host, ErrNotHBC)
	}
	if len(h.queue) >= maxQueued {
		return "", ErrQueueFull
	}
	h.queue = append(h.queue, q)
	return q.id, nil
}

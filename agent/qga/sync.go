package qga

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/mbvm/mb/agent/qgaproto"
	"math/rand/v2"
	"net"
	"time"

	"github.com/mbvm/mb/agent/internal/frame"
)

// sync sends guest-sync-delimited with a random id and discards everything
// up to the 0xFF that precedes the matching reply. While the agent stays
// silent it sends a fresh sync every syncResend; once one is answered, the
// replies to the later ones are read too, so none is left to be taken for
// the reply to the next call.
func (s *session) sync() error {
	c := s.c
	var ids []int64
	send := func() error {
		id := rand.Int64N(1<<53-1) + 1
		ids = append(ids, id)
		return s.write(qgaproto.Request{Execute: "guest-sync-delimited", Arguments: qgaproto.SyncArgs{ID: id}})
	}
	if err := send(); err != nil {
		return err
	}
	matched := -1
	afterDelimiter := false
	for {
		wait := s.deadline
		if matched < 0 {
			if next := time.Now().Add(syncResend); next.Before(wait) {
				wait = next
			}
		}
		c.conn.SetReadDeadline(wait)
		kind, obj, err := c.fr.Next()
		if err != nil {
			var ne net.Error
			if matched < 0 && errors.As(err, &ne) && ne.Timeout() && time.Now().Before(s.deadline) {
				c.conn.SetDeadline(s.deadline)
				if err := send(); err != nil {
					return err
				}
				continue
			}
			return fmt.Errorf("synchronise with the guest agent (no reply to guest-sync-delimited; is an agent running in the guest?): %w", err)
		}
		switch kind {
		case frame.Delimiter:
			afterDelimiter = true
			continue
		case frame.Object:
		default:
			afterDelimiter = false
			continue
		}
		if !afterDelimiter {
			continue
		}
		afterDelimiter = false
		var got int64
		ret, perr := parseReply(obj)
		if perr != nil || json.Unmarshal(ret, &got) != nil {
			continue
		}
		for i, id := range ids {
			if id == got && i > matched {
				matched = i
			}
		}
		if matched == len(ids)-1 {
			return c.conn.SetDeadline(s.deadline)
		}
	}
}

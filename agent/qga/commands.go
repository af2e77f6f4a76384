package qga

import (
	"context"
	"errors"
	"fmt"
	"github.com/mbvm/mb/agent/qgaproto"
	"time"
)

// Ping runs guest-ping and returns the round trip of the ping itself
// (connecting, synchronising and waiting for the channel not included).
func (c *Client) Ping(ctx context.Context) (time.Duration, error) {
	var rtt time.Duration
	err := c.do(ctx, c.opts.CallTimeout, func(s *session) error {
		start := time.Now()
		if err := s.call("guest-ping", nil, nil); err != nil {
			return err
		}
		rtt = time.Since(start)
		return nil
	})
	return rtt, err
}

// Info runs guest-info. The result is cached for the life of the
// connection.
func (c *Client) Info(ctx context.Context) (*qgaproto.Info, error) {
	var info *qgaproto.Info
	err := c.do(ctx, c.opts.CallTimeout, func(s *session) error {
		var err error
		info, err = s.agentInfo()
		return err
	})
	return info, err
}

// agentInfo returns the connection's cached guest-info, fetching it once.
func (s *session) agentInfo() (*qgaproto.Info, error) {
	if s.c.info != nil {
		return s.c.info, nil
	}
	var info qgaproto.Info
	if err := s.call("guest-info", nil, &info); err != nil {
		return nil, err
	}
	s.c.info = &info
	return &info, nil
}

// HostName runs guest-get-host-name.
func (c *Client) HostName(ctx context.Context) (string, error) {
	var h qgaproto.HostName
	err := c.Call(ctx, "guest-get-host-name", nil, &h)
	return h.HostName, err
}

// OSInfo runs guest-get-osinfo.
func (c *Client) OSInfo(ctx context.Context) (*qgaproto.OSInfo, error) {
	var o qgaproto.OSInfo
	if err := c.Call(ctx, "guest-get-osinfo", nil, &o); err != nil {
		return nil, err
	}
	return &o, nil
}

// Interfaces runs guest-network-get-interfaces.
func (c *Client) Interfaces(ctx context.Context) ([]qgaproto.Interface, error) {
	var out []qgaproto.Interface
	err := c.Call(ctx, "guest-network-get-interfaces", nil, &out)
	return out, err
}

// Shutdown asks the guest to shut down (mode "powerdown", "reboot" or
// "halt"; "" is powerdown). guest-shutdown sends no reply when it succeeds,
// so Shutdown sends a guest-ping right behind it: an error reply means the
// shutdown failed, the ping's reply means the agent accepted it, and a
// guest that goes silent or drops the channel is taken as going down. The
// caller watches the VM go down; Shutdown does not wait for it.
func (c *Client) Shutdown(ctx context.Context, mode string) error {
	err := c.do(ctx, c.opts.CallTimeout, func(s *session) error {
		s.replyLimit("guest-shutdown")
		if err := s.write(qgaproto.Request{Execute: "guest-shutdown", Arguments: qgaproto.ShutdownArgs{Mode: mode}}); err != nil {
			return err
		}
		if err := s.write(qgaproto.Request{Execute: "guest-ping"}); err != nil {
			return fmt.Errorf("%w: %w", errGoingDown, err)
		}
		if wait := time.Now().Add(shutdownReplyWait); wait.Before(s.deadline) {
			s.c.conn.SetReadDeadline(wait)
		}
		_, err := s.readReply("guest-shutdown")
		var qe *qgaproto.Error
		if errors.As(err, &qe) {
			// Take the ping's reply too, so the channel stays in step; if
			// it does not come, the next call reconnects and resyncs.
			if _, perr := s.readReply("guest-ping"); perr != nil {
				s.c.dropLocked()
			}
			return fmt.Errorf("guest agent refused to shut down: %w", err)
		}
		if err != nil {
			return fmt.Errorf("%w: %w", errGoingDown, err)
		}
		return nil
	})
	if errors.Is(err, errGoingDown) {
		c.log.Debug("no reply after guest-shutdown; taking the guest as going down", "error", err)
		return nil
	}
	return err
}

// shutdownReplyWait is how long Shutdown waits for the agent to either
// refuse the shutdown or answer the ping sent behind it.
const shutdownReplyWait = 3 * time.Second

// errGoingDown marks a guest that dropped the channel or went silent after
// guest-shutdown.
var errGoingDown = errors.New("guest went silent after guest-shutdown")

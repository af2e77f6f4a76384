package main

import (
	"context"
	"time"

	"github.com/mbvm/mb/bench/rig"
)

// session is what a part runs in: a temporary $MB_HOME with a daemon
// started on it and, for parts that boot real VMs, the mini image linked in
// and the machine-wide VM slot held.
type session struct {
	home    string
	mb      *rig.MB
	daemon  *rig.Daemon
	release func() // the VM slot; nil for fake-only parts
}

// openSession checks the binaries (and the image when vms is set), makes a
// home named after prefix and starts its daemon with env added to the
// environment. close undoes it all, in reverse order.
func (e *env) openSession(ctx context.Context, prefix string, vms bool, env ...string) (_ *session, err error) {
	if err := e.needMB(); err != nil {
		return nil, err
	}
	s := &session{}
	defer func() {
		if err != nil {
			s.close(e)
		}
	}()
	if vms {
		if err := e.needImage(); err != nil {
			return nil, err
		}
		if s.release, err = rig.VMSlot(ctx); err != nil {
			return nil, err
		}
	}
	if s.home, err = rig.NewHome(prefix); err != nil {
		return nil, err
	}
	if vms {
		if err := rig.LinkImage(s.home, e.img); err != nil {
			return nil, err
		}
	}
	s.mb = &rig.MB{Bin: e.bins.MB, Home: s.home, Env: env}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if s.daemon, err = s.mb.StartDaemon(dctx); err != nil {
		return nil, err
	}
	return s, nil
}

// close kills the daemon and whatever still runs from the home, removes
// the home and gives the VM slot back.
func (s *session) close(e *env) {
	if s.daemon != nil {
		s.daemon.Kill()
	}
	if s.home != "" {
		cleanupHome(e, s.home)
	}
	if s.release != nil {
		s.release()
	}
}

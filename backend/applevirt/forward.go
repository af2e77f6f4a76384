package applevirt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/mbvm/mb/agent/vsockrelay"
	"github.com/mbvm/mb/vm/spec"
)

// relayReplyTimeout bounds the wait for the guest relay's answer.
const relayReplyTimeout = 15 * time.Second

// route is a host listener and the guest port it leads to.
type route struct {
	l     net.Listener
	guest int
}

// forwarder is the host side of SSH and the spec's forwards. Apple's NAT
// network has no port forwarding, so each host port is a listener on
// 127.0.0.1, bound before the VM boots (no race for the port), whose
// connections go over vsock to the guest's relay (mb-agent
// --relay-vsock-port), which connects to 127.0.0.1:PORT in the guest. A
// guest without the relay is reached at its NAT address instead, found in
// the host's DHCP leases by the VM's MAC address.
type forwarder struct {
	log       *slog.Logger
	dialVsock func(ctx context.Context, port uint32) (net.Conn, error)
	relayPort uint32
	mac       net.HardwareAddr
	// lookup finds the guest's NAT address (LookupLease on LeasesFile).
	lookup  func(mac net.HardwareAddr) (net.IP, error)
	sshPort int
	routes  []route
	wg      sync.WaitGroup
}

// bindForwards listens on 127.0.0.1 for SSH (sshPort, 0 for any free port)
// and for every TCP forward. On error nothing stays bound.
func bindForwards(sshPort int, fwds []spec.Forward) (*forwarder, error) {
	f := &forwarder{}
	add := func(host, guest int) error {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(host)))
		if err != nil {
			return fmt.Errorf("listen on 127.0.0.1:%d for guest port %d: %w (is the port taken? pick another in spec.yaml)", host, guest, err)
		}
		f.routes = append(f.routes, route{l: l, guest: guest})
		return nil
	}
	if err := add(sshPort, 22); err != nil {
		return nil, err
	}
	f.sshPort = f.routes[0].l.Addr().(*net.TCPAddr).Port
	for _, fw := range fwds {
		if fw.Proto == "udp" {
			continue
		}
		if err := add(fw.Host, fw.Guest); err != nil {
			f.close()
			return nil, err
		}
	}
	return f, nil
}

// serve accepts on every listener until ctx ends or close.
func (f *forwarder) serve(ctx context.Context) {
	for _, r := range f.routes {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			for {
				c, err := r.l.Accept()
				if err != nil {
					if !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
						f.log.Warn("forward stopped accepting", "addr", r.l.Addr(), "err", err)
					}
					return
				}
				f.wg.Add(1)
				go func() {
					defer f.wg.Done()
					defer c.Close()
					if err := f.relay(ctx, c, r.guest); err != nil && ctx.Err() == nil {
						f.log.Info("forwarded connection failed", "guest_port", r.guest, "err", err)
					}
				}()
			}
		}()
	}
}

// relay connects c to the guest port and carries bytes both ways.
func (f *forwarder) relay(ctx context.Context, c net.Conn, guest int) error {
	g, err := f.connect(ctx, guest)
	if err != nil {
		return err
	}
	defer g.Close()
	return vsockrelay.Pipe(ctx, c, g)
}

// connect reaches the guest port through the vsock relay, or at the
// guest's NAT address when no relay answers.
func (f *forwarder) connect(ctx context.Context, guest int) (net.Conn, error) {
	v, verr := f.dialVsock(ctx, f.relayPort)
	if verr == nil {
		_ = v.SetDeadline(time.Now().Add(relayReplyTimeout))
		err := vsockrelay.WriteRequest(v, guest)
		if err == nil {
			err = vsockrelay.ReadReply(v, guest)
		}
		if err != nil {
			v.Close()
			return nil, err
		}
		_ = v.SetDeadline(time.Time{})
		return v, nil
	}
	ip, err := f.lookup(f.mac)
	if err != nil {
		return nil, fmt.Errorf("guest port %d: no relay on vsock port %d (%v), and %w", guest, f.relayPort, verr, err)
	}
	var d net.Dialer
	g, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip.String(), strconv.Itoa(guest)))
	if err != nil {
		return nil, fmt.Errorf("guest port %d at the guest's NAT address %s: %w", guest, ip, err)
	}
	return g, nil
}

// close stops the listeners and waits for the relayed connections, which
// end with the context given to serve.
func (f *forwarder) close() {
	for _, r := range f.routes {
		r.l.Close()
	}
}

// wait waits for every accept loop and connection to end.
func (f *forwarder) wait() { f.wg.Wait() }

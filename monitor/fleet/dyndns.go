package fleet

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// DNSSettings configure dynamic DNS (hbd's dyndomains and nsupdate_bin).
type DNSSettings struct {
	// Domains are the zones a host's record <host>.<domain> is kept in.
	Domains []string
	// Nsupdate is the nsupdate binary (default: nsupdate on PATH);
	// KeyFile a TSIG key for nsupdate -k; Server the name server to send
	// updates to (HOST or HOST:PORT; default: nsupdate's choice).
	Nsupdate, KeyFile, Server string
	// TTL of the records (default DefaultDNSTTL).
	TTL time.Duration
}

// Dynamic DNS timing.
const (
	DefaultDNSTTL = 60 * time.Second
	// nsupdateTimeout bounds one nsupdate run.
	nsupdateTimeout = 30 * time.Second
	// dnsRetryMin and dnsRetryMax bound the retry backoff after a failure.
	dnsRetryMin = 2 * time.Second
	dnsRetryMax = 5 * time.Minute
)

// dynDNS is the background worker: ingest only records the newest address
// per host; the worker runs nsupdate and retries failures with backoff.
type dynDNS struct {
	f       *Fleet
	mu      sync.Mutex
	pending map[string]string
	kick    chan struct{}
}

func newDynDNS(f *Fleet) *dynDNS {
	return &dynDNS{f: f, pending: map[string]string{}, kick: make(chan struct{}, 1)}
}

// enqueue records a host's new address; it never blocks.
func (d *dynDNS) enqueue(host, addr string) {
	if len(d.f.set.Load().DNS.Domains) == 0 {
		return
	}
	d.mu.Lock()
	d.pending[host] = addr
	d.mu.Unlock()
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

func (d *dynDNS) run(ctx context.Context) {
	backoff := time.Duration(0)
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
			if backoff > 0 {
				continue // wait for the retry timer
			}
		case <-retry:
			retry = nil
		}
		d.mu.Lock()
		batch := d.pending
		d.pending = map[string]string{}
		d.mu.Unlock()
		failed := false
		for host, addr := range batch {
			if ctx.Err() != nil {
				return
			}
			if err := d.update(ctx, host, addr); err != nil {
				failed = true
				d.f.stats.dnsFailures.Add(1)
				d.f.log.Warn("fleet: dynamic DNS update failed; retrying", "host", host, "addr", addr, "err", err)
				d.mu.Lock()
				if _, newer := d.pending[host]; !newer {
					d.pending[host] = addr
				}
				d.mu.Unlock()
				continue
			}
			d.f.stats.dnsUpdates.Add(1)
			d.f.log.Info("fleet: dynamic DNS updated", "host", host, "addr", addr)
		}
		if failed {
			backoff = min(max(2*backoff, dnsRetryMin), dnsRetryMax)
			retry = time.After(backoff)
		} else {
			backoff = 0
		}
	}
}

// update sets <host>.<domain> to addr in every domain.
func (d *dynDNS) update(ctx context.Context, host, addr string) error {
	s := d.f.set.Load().DNS
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	rr := "A"
	if !ip.Unmap().Is4() {
		rr = "AAAA"
	}
	ttl := s.TTL
	if ttl <= 0 {
		ttl = DefaultDNSTTL
	}
	bin := s.Nsupdate
	if bin == "" {
		bin = "nsupdate"
	}
	for _, dom := range s.Domains {
		zone := strings.TrimSuffix(dom, ".") + "."
		name := host + "." + zone
		var script strings.Builder
		if s.Server != "" {
			h, p, err := net.SplitHostPort(s.Server)
			if err != nil {
				h, p = s.Server, ""
			}
			fmt.Fprintf(&script, "server %s %s\n", h, p)
		}
		fmt.Fprintf(&script, "zone %s\nupdate delete %s %s\nupdate add %s %d %s %s\nsend\n",
			zone, name, rr, name, int(ttl/time.Second), rr, ip.Unmap())
		args := []string{}
		if s.KeyFile != "" {
			args = append(args, "-k", s.KeyFile)
		}
		cctx, cancel := context.WithTimeout(ctx, nsupdateTimeout)
		cmd := exec.CommandContext(cctx, bin, args...)
		cmd.Stdin = strings.NewReader(script.String())
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err = cmd.Run()
		cancel()
		if err != nil {
			msg := strings.TrimSpace(out.String())
			if len(msg) > 500 {
				msg = msg[:500]
			}
			return fmt.Errorf("%s for %s: %w: %s", bin, name, err, msg)
		}
	}
	return nil
}

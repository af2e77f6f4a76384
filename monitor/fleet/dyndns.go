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
// per host; the worker runs nsupdate and retries a failed host with its own
// backoff, so one failing host does not hold back the others.
type dynDNS struct {
	f       *Fleet
	mu      sync.Mutex
	pending map[string]*dnsJob
	kick    chan struct{}
}

// dnsJob is a host's address waiting to be published.
type dnsJob struct {
	addr      string
	notBefore time.Time
	backoff   time.Duration
}

func newDynDNS(f *Fleet) *dynDNS {
	return &dynDNS{f: f, pending: map[string]*dnsJob{}, kick: make(chan struct{}, 1)}
}

// enqueue records a host's new address; it never blocks. A new address
// is tried at once, even while an older one waits for its retry.
func (d *dynDNS) enqueue(host, addr string) {
	if len(d.f.set.Load().DNS.Domains) == 0 {
		return
	}
	d.mu.Lock()
	d.pending[host] = &dnsJob{addr: addr}
	d.mu.Unlock()
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

func (d *dynDNS) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
		case <-timer.C:
		}
		// Take the jobs that are due.
		now := time.Now()
		due := map[string]dnsJob{}
		d.mu.Lock()
		for host, j := range d.pending {
			if !j.notBefore.After(now) {
				due[host] = *j
				delete(d.pending, host)
			}
		}
		d.mu.Unlock()
		for host, j := range due {
			if ctx.Err() != nil {
				return
			}
			err := d.update(ctx, host, j.addr)
			if err == nil {
				d.f.stats.dnsUpdates.Add(1)
				d.f.log.Info("fleet: dynamic DNS updated", "host", host, "addr", j.addr)
				continue
			}
			d.f.stats.dnsFailures.Add(1)
			j.backoff = min(max(2*j.backoff, dnsRetryMin), dnsRetryMax)
			j.notBefore = time.Now().Add(j.backoff)
			d.f.log.Warn("fleet: dynamic DNS update failed; will retry", "host", host, "addr", j.addr, "retry_in", j.backoff, "err", err)
			d.mu.Lock()
			if _, newer := d.pending[host]; !newer {
				d.pending[host] = &j
			}
			d.mu.Unlock()
		}
		// Sleep until the next retry is due (a kick wakes it earlier).
		next := time.Hour
		d.mu.Lock()
		for _, j := range d.pending {
			next = min(next, max(time.Until(j.notBefore), 0))
		}
		d.mu.Unlock()
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
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

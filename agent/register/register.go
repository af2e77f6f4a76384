// Package register is mb-agent's register mode: a client of the VM
// Tracker's HTTP registration API. It finds the machine's hostname and the
// first non-loopback IPv4 address of one network interface and posts them
// to <api>/api/register, once at start and again every interval, so a
// server (mb's monitor, or the tracker's own) sees the machine alive and
// learns its current address.
//
// The first registration is tried FirstAttempts times, Retry apart; when
// none succeeds Run returns an error and the program should exit non-zero.
// Later failures are logged and the next tick tries again. While the
// interface is missing, or has no IPv4 address, Run waits and looks again
// every Retry; that wait does not use up the first registration's attempts.
package register

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// FirstAttempts is how many times the first registration is tried before
// Run gives up.
const FirstAttempts = 3

// Path is the registration endpoint under the API URL.
const Path = "/api/register"

// Defaults of the tracker client's flags.
const (
	DefaultInterval = 30 * time.Second
	DefaultRetry    = 5 * time.Second
)

// requestTimeout bounds one registration request.
const requestTimeout = 15 * time.Second

// Info is the registration's JSON body, with the tracker's field names.
type Info struct {
	Hostname  string `json:"hostname"`
	IPAddress string `json:"ip_address"`
	Interface string `json:"interface"`
}

// Options configures Run.
type Options struct {
	// API is the server's base URL (http or https); a trailing slash is
	// dropped.
	API string
	// Interface is the network interface whose address is registered.
	Interface string
	// Interval is the time between registrations; default 30 s.
	Interval time.Duration
	// Retry is the wait between attempts of the first registration and
	// between looks for a missing interface; default 5 s.
	Retry time.Duration
	// Token, when set, is sent as "Authorization: Bearer TOKEN".
	Token string
	// Verbose logs every registration, not only failures and changes.
	Verbose bool
	// Logger receives the log; default slog.Default().
	Logger *slog.Logger
	// Client sends the requests; default a client with a 15 s timeout.
	Client *http.Client
	// Hostname returns the name to register; default os.Hostname, or
	// "unknown" when that fails.
	Hostname func() string
	// Address returns the interface's IPv4 address; default
	// InterfaceIPv4. Tests replace it.
	Address func(iface string) (string, error)
}

// CheckAPI validates a server URL: http or https, with a host.
func CheckAPI(api string) error {
	u, err := url.Parse(api)
	if err != nil {
		return fmt.Errorf("--api %q is not a URL: %w", api, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("--api %q: use an http:// or https:// URL, such as http://monitor:8080", api)
	}
	if u.Host == "" {
		return fmt.Errorf("--api %q has no host: use a URL such as http://monitor:8080", api)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("--api %q: give the server's base URL only, without a query or fragment", api)
	}
	return nil
}

func (o *Options) defaults() error {
	if err := CheckAPI(o.API); err != nil {
		return err
	}
	o.API = strings.TrimRight(o.API, "/")
	if o.Interface == "" {
		return errors.New("no --interface given: name the network interface whose address to register, such as eth0")
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Retry <= 0 {
		o.Retry = DefaultRetry
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: requestTimeout}
	}
	if o.Hostname == nil {
		o.Hostname = hostname
	}
	if o.Address == nil {
		o.Address = InterfaceIPv4
	}
	return nil
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "unknown"
	}
	return h
}

// InterfaceIPv4 returns the first IPv4 address of the named interface that
// is not a loopback address.
func InterfaceIPv4(name string) (string, error) {
	iface, err := net.InterfaceByName(name)
	if err != nil {
		return "", fmt.Errorf("interface %s not found: %w", name, err)
	}
	addrs, err := iface.Addrs()
	if err != nil {
		return "", fmt.Errorf("addresses of interface %s: %w", name, err)
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if ip4 := ipn.IP.To4(); ip4 != nil && !ip4.IsLoopback() {
			return ip4.String(), nil
		}
	}
	return "", fmt.Errorf("interface %s has no IPv4 address", name)
}

// Run registers until ctx ends, and then returns nil. It returns an error
// when the options are bad or when the first registration failed
// FirstAttempts times.
func Run(ctx context.Context, o Options) error {
	if err := o.defaults(); err != nil {
		return err
	}
	log := o.Logger
	log.Info("registering with the server", "api", o.API, "interface", o.Interface,
		"interval", o.Interval, "retry", o.Retry)
	var last Info
	for attempt := 1; ; {
		info, ok := o.lookup(ctx, true)
		if !ok {
			return nil // ctx ended while waiting for the interface
		}
		err := o.send(ctx, info)
		if err == nil {
			log.Info("registered", "hostname", info.Hostname, "ip_address", info.IPAddress, "interface", info.Interface)
			last = info
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		if attempt >= FirstAttempts {
			return fmt.Errorf("the first registration with %s failed %d times, giving up (last error: %w); check that the server runs and that --api is right", o.API+Path, attempt, err)
		}
		log.Warn("registration failed, retrying", "attempt", attempt, "of", FirstAttempts, "retry_in", o.Retry, "err", err)
		attempt++
		if !sleep(ctx, o.Retry) {
			return nil
		}
	}
	tick := time.NewTicker(o.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping: registration ends")
			return nil
		case <-tick.C:
		}
		info, ok := o.lookup(ctx, false)
		if !ok {
			continue
		}
		if err := o.send(ctx, info); err != nil {
			if ctx.Err() != nil {
				continue
			}
			log.Warn("registration failed; trying again at the next interval", "err", err)
			continue
		}
		switch {
		case info != last:
			log.Info("registered a change", "hostname", info.Hostname, "ip_address", info.IPAddress, "was", last.IPAddress)
		case o.Verbose:
			log.Info("registered", "hostname", info.Hostname, "ip_address", info.IPAddress)
		}
		last = info
	}
}

// lookup reads the hostname and the interface's address. With wait it
// looks again every Retry until the address is there (false only when ctx
// ends); without, a missing address is logged and false returned.
func (o *Options) lookup(ctx context.Context, wait bool) (Info, bool) {
	warned := false
	for {
		ip, err := o.Address(o.Interface)
		if err == nil {
			if warned {
				o.Logger.Info("interface has an address now", "interface", o.Interface, "ip_address", ip)
			}
			return Info{Hostname: o.Hostname(), IPAddress: ip, Interface: o.Interface}, true
		}
		if !wait {
			o.Logger.Warn("no address to register; trying again at the next interval", "err", err)
			return Info{}, false
		}
		if !warned || o.Verbose {
			o.Logger.Warn("waiting for the interface's IPv4 address", "err", err, "retry_in", o.Retry)
			warned = true
		}
		if !sleep(ctx, o.Retry) {
			return Info{}, false
		}
	}
}

// send posts one registration and checks for a 200.
func (o *Options) send(ctx context.Context, info Info) error {
	body, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("encode the registration: %w", err)
	}
	if o.Verbose {
		o.Logger.Info("sending registration", "hostname", info.Hostname, "ip_address", info.IPAddress, "interface", info.Interface)
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, o.API+Path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build the request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+o.Token)
	}
	resp, err := o.Client.Do(req)
	if err != nil {
		return fmt.Errorf("send the registration: %w", err)
	}
	defer resp.Body.Close()
	// Read a little of the answer, so the connection is reused and an
	// error message can be shown.
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		text := strings.TrimSpace(string(msg))
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			return fmt.Errorf("server returned status 401 (the server wants a token: give --token): %s", text)
		default:
			return fmt.Errorf("server returned status %d: %s", resp.StatusCode, text)
		}
	}
	return nil
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// ParseSeconds reads a duration given as whole seconds ("30", as the
// tracker's flags take it) or as a Go duration ("1s", "500ms").
func ParseSeconds(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n <= 0 || n > int64(math.MaxInt64/time.Second) {
			return 0, fmt.Errorf("%q: give a positive number of seconds or a duration such as 30s", s)
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is neither whole seconds nor a duration such as 30s or 500ms", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q: give a positive duration", s)
	}
	return d, nil
}

// SecondsFlag is a flag.Value holding a duration written as whole seconds
// or as a Go duration.
type SecondsFlag struct{ D time.Duration }

// String implements flag.Value.
func (f *SecondsFlag) String() string {
	if f == nil {
		return ""
	}
	if f.D%time.Second == 0 {
		return fmt.Sprint(int64(f.D / time.Second))
	}
	return f.D.String()
}

// Type names the value in pflag's help.
func (f *SecondsFlag) Type() string { return "seconds" }

// Set implements flag.Value.
func (f *SecondsFlag) Set(s string) error {
	d, err := ParseSeconds(s)
	if err != nil {
		return err
	}
	f.D = d
	return nil
}

// Package config reads monitor.yaml, the monitor's configuration. Its keys
// follow hbd's ~/.hb.yaml wherever hbd has one, so an hbd operator can carry
// a config over; mb's additions are listen, heartbeat_listen,
// metrics_interval, max_hosts and register_token.
//
// Unknown keys and bad values are refused with the line number and the
// accepted values. Every duration accepts plain seconds (as hbd's do) or a
// Go duration such as 5s. The file holds secrets, so it must not be
// readable by group or others, and every secret also has a *_file form
// naming a file to read it from.
//
// Notification channels belong to the notify package: they are kept here as
// raw YAML nodes and checked by a validator the caller supplies.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mbvm/mb/monitor"
	"github.com/mbvm/mb/monitor/alert"
	"github.com/mbvm/mb/monitor/threshold"
)

// Defaults of keys with a default.
const (
	DefaultMetricsInterval   = 30 * time.Second
	DefaultJournalMaxSize    = 100 << 20
	DefaultJournalMaxBackups = 10
	DefaultJournalFile       = "messages.journal"
	DefaultRollupRetention   = 7 * 24 * time.Hour
)

// Config is a parsed monitor.yaml.
type Config struct {
	// Path is the file it was read from ("" for Parse without a file).
	Path string
	// Interval and Grace: expected heartbeat interval and slack (hbd's
	// interval and grace, default 20 s and 2 s).
	Interval, Grace time.Duration
	// Renotify is threshold_renotify_interval (default 3600 s).
	Renotify time.Duration
	// MetricsInterval is how often the daemon pulls VM metrics (default 30 s).
	MetricsInterval time.Duration
	// Thresholds are the global rules; ThresholdConfigs the named profiles.
	Thresholds       threshold.Spec
	ThresholdConfigs map[string]threshold.Spec
	// NotificationChannels are the channel definitions, as YAML nodes for
	// the notify package to decode.
	NotificationChannels map[string]*yaml.Node
	// Users by name; DefaultOwner owns hosts without an owner.
	Users        map[string]User
	DefaultOwner string
	// Hosts holds per-host settings by host name.
	Hosts map[string]Host
	// Journal is the message journal's settings.
	Journal Journal
	// Listen is the TCP address of the API and pages ("" for none).
	Listen string
	// HeartbeatListen is the UDP address for hbc heartbeats ("" for none;
	// hbd's hb_port: N is read as ":N").
	HeartbeatListen string
	// MaxHosts bounds the hosts tracked (0: no limit).
	MaxHosts int
	// RegisterToken protects the fleet registration endpoints ("" open).
	RegisterToken string
	// RollupRetention is how long hour rollups are kept (default 7 days);
	// RollupMinuteRetention the same for minute rollups (default
	// RollupRetention).
	RollupRetention, RollupMinuteRetention time.Duration
	// DynDomains and NsupdateBin are hbd's dynamic DNS keys; NsupdateKey
	// is a TSIG key file for nsupdate -k, NsupdateServer the name server
	// to send updates to (HOST or HOST:PORT; default: nsupdate finds the
	// zone's primary), DynDNSTTL the records' TTL (default 60 s).
	DynDomains     []string
	NsupdateBin    string
	NsupdateKey    string
	NsupdateServer string
	DynDNSTTL      time.Duration
	// HMACKey is the shared key of signed heartbeats (hmac_key); with
	// HMACRequired every heartbeat must be signed, else a host that once
	// signed must keep signing.
	HMACKey      string
	HMACRequired bool
	// Warnings lists hbd keys that mb reads but does not use, with their line.
	Warnings []string
}

// User is one entry of users.
type User struct {
	Name     string
	FullName string
	Admin    bool
	// Password is a pbkdf2:sha256 hash (hbd's layout), "" for none.
	Password string
	// NotificationChannels names the user's channels.
	NotificationChannels []string
}

// Host is one entry of hosts.
type Host struct {
	Owner              string
	Managers, Monitors []string
	// Watch false mutes the host's notifications (default true).
	Watch bool
	// ThresholdConfig names profiles applied left to right.
	ThresholdConfig []string
	// DynDNS asks for DNS updates when its address changes.
	DynDNS bool
	// Interval and Grace override the global ones when not zero.
	Interval, Grace time.Duration
	// Socktop is the ws:// or wss:// URL of a socktop agent the monitor
	// polls for the host's metrics, Token its ?token=.
	Socktop, Token string
}

// Journal holds the journal keys.
type Journal struct {
	// Enabled is journal_enabled (default true).
	Enabled bool
	// Dir is journal_dir ("" for the caller's default) and File
	// journal_file.
	Dir, File string
	// MaxSize is journal_max_size in bytes; MaxBackups journal_max_backups.
	MaxSize    int64
	MaxBackups int
}

// Options tune parsing.
type Options struct {
	// ValidateChannel checks one notification channel's definition; nil
	// accepts any mapping. Its error is reported with the channel's line.
	ValidateChannel func(name string, node *yaml.Node) error
}

// Load reads and parses a config file. The file must not be readable or
// writable by group or others.
func Load(path string, opts Options) (*Config, error) {
	if err := CheckPrivate(path); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("monitor config: %w", err)
	}
	c, err := Parse(data, path, opts)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// CheckPrivate refuses a file that group or others can access, naming the
// chmod that fixes it.
func CheckPrivate(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("monitor config: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s: mode %04o lets other users read the secrets it holds; run: chmod 600 %s", path, perm, shellQuote(path))
	}
	return nil
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r == '+' || r == '~' ||
			(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9'))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Parse parses config text. name is used in messages and its directory
// resolves relative *_file paths.
func Parse(data []byte, name string, opts Options) (*Config, error) {
	if name == "" {
		name = "monitor.yaml"
	}
	p := &parser{name: name, dir: filepath.Dir(name), opts: opts, lines: map[string]int{}}
	c := &Config{
		Path:                 name,
		Interval:             monitor.DefaultInterval,
		Grace:                monitor.DefaultGrace,
		Renotify:             alert.DefaultRenotify,
		MetricsInterval:      DefaultMetricsInterval,
		RollupRetention:      DefaultRollupRetention,
		ThresholdConfigs:     map[string]threshold.Spec{},
		Thresholds:           threshold.Spec{},
		Users:                map[string]User{},
		Hosts:                map[string]Host{},
		Journal:              Journal{Enabled: true, File: DefaultJournalFile, MaxSize: DefaultJournalMaxSize, MaxBackups: DefaultJournalMaxBackups},
		NotificationChannels: map[string]*yaml.Node{},
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(doc.Content) > 0 { // an empty file is all defaults
		if err := p.top(doc.Content[0], c); err != nil {
			return nil, err
		}
	}
	if c.RollupMinuteRetention == 0 {
		c.RollupMinuteRetention = c.RollupRetention
	}
	if err := p.check(c); err != nil {
		return nil, err
	}
	return c, nil
}

// Settings returns the engine's settings from the config.
func (c *Config) Settings() monitor.Settings {
	s := monitor.Settings{
		Interval:     c.Interval,
		Grace:        c.Grace,
		Renotify:     c.Renotify,
		Thresholds:   c.Thresholds,
		Profiles:     c.ThresholdConfigs,
		Hosts:        make(map[string]monitor.HostSettings, len(c.Hosts)),
		DefaultOwner: c.DefaultOwner,
		MaxHosts:     c.MaxHosts,
	}
	for name, h := range c.Hosts {
		s.Hosts[name] = monitor.HostSettings{
			Owner: h.Owner, Managers: h.Managers, Monitors: h.Monitors,
			Watch: h.Watch, ThresholdConfig: h.ThresholdConfig,
			Interval: h.Interval, Grace: h.Grace,
		}
	}
	return s
}

// check validates cross-references once everything is read.
func (p *parser) check(c *Config) error {
	if _, err := threshold.Compile(c.Thresholds); err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	for _, name := range sortedKeys(c.ThresholdConfigs) {
		if _, err := threshold.Compile(c.Thresholds, c.ThresholdConfigs[name]); err != nil {
			return fmt.Errorf("%s: threshold_configs.%s: %w", p.name, name, err)
		}
	}
	if err := p.checkListen(c); err != nil {
		return err
	}
	userNames := orNone(sortedKeys(c.Users))
	knownUser := func(where, u string) error {
		if len(c.Users) == 0 || u == "" {
			return nil
		}
		if _, ok := c.Users[u]; !ok {
			return fmt.Errorf("%s: %s: unknown user %q (users: %s)", p.at(where), where, u, userNames)
		}
		return nil
	}
	if err := knownUser("default_owner", c.DefaultOwner); err != nil {
		return err
	}
	for _, hn := range sortedKeys(c.Hosts) {
		h := c.Hosts[hn]
		if err := knownUser("hosts."+hn+".owner", h.Owner); err != nil {
			return err
		}
		for _, u := range h.Managers {
			if err := knownUser("hosts."+hn+".managers", u); err != nil {
				return err
			}
		}
		for _, u := range h.Monitors {
			if err := knownUser("hosts."+hn+".monitors", u); err != nil {
				return err
			}
		}
		layers := []threshold.Spec{c.Thresholds}
		for _, prof := range h.ThresholdConfig {
			spec, ok := c.ThresholdConfigs[prof]
			if !ok {
				return fmt.Errorf("%s: hosts.%s.threshold_config: unknown profile %q (threshold_configs: %s)",
					p.at("hosts."+hn+".threshold_config"), hn, prof, orNone(sortedKeys(c.ThresholdConfigs)))
			}
			layers = append(layers, spec)
		}
		if _, err := threshold.Compile(layers...); err != nil {
			return fmt.Errorf("%s: hosts.%s.threshold_config: %w", p.at("hosts."+hn+".threshold_config"), hn, err)
		}
	}
	for _, un := range sortedKeys(c.Users) {
		for _, ch := range c.Users[un].NotificationChannels {
			if _, ok := c.NotificationChannels[ch]; !ok {
				return fmt.Errorf("%s: users.%s.notification_channels: unknown channel %q (notification_channels: %s)",
					p.at("users."+un+".notification_channels"), un, ch, orNone(sortedKeys(c.NotificationChannels)))
			}
		}
	}
	return nil
}

// checkListen refuses an API address other hosts can reach unless users
// with passwords are configured: the API would be open to the network.
func (p *parser) checkListen(c *Config) error {
	if c.Listen == "" || IsLoopback(c.Listen) {
		return nil
	}
	for _, u := range c.Users {
		if u.Password != "" {
			return nil
		}
	}
	return fmt.Errorf("%s: listen %s is reachable from other machines, and no user has a password: the API and pages there would be open to anyone; add users with passwords (pbkdf2:sha256 hashes), or listen on 127.0.0.1", p.at("listen"), c.Listen)
}

// checkSocktopURL accepts a ws:// or wss:// URL with a host.
func checkSocktopURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return fmt.Errorf("%q is not a socktop agent's URL (accepted: ws://HOST:3000/ws or wss://HOST:8443/ws)", s)
	}
	if u.Query().Has("token") {
		return errors.New("give the token in the host's token key, not in the URL")
	}
	return nil
}

// IsLoopback reports whether a host:port address listens on loopback only
// (127.0.0.0/8, ::1 or localhost).
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// SecretFile reads a secret named by a *_file key of this config (for the
// notification channels): relative paths are relative to the config's
// directory; see ReadSecretFile.
func (c *Config) SecretFile(path string) (string, error) {
	return ReadSecretFile(filepath.Dir(c.Path), path)
}

// ReadSecretFile reads a secret from a file named by a *_file key:
// relative paths are relative to the config's directory, the file must not
// be accessible to group or others, and one trailing newline is dropped.
func ReadSecretFile(dir, path string) (string, error) {
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("secret file %s: mode %04o lets other users read it; run: chmod 600 %s", path, perm, shellQuote(path))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSuffix(string(b), "\n")
	s = strings.TrimSuffix(s, "\r")
	if s == "" {
		return "", fmt.Errorf("secret file %s is empty", path)
	}
	return s, nil
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none defined"
	}
	return strings.Join(names, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// errAt formats an error at a node's line.
func (p *parser) errAt(n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("%s:%d: %s", p.name, n.Line, fmt.Sprintf(format, args...))
}

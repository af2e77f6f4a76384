package service

import (
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/mbvm/mb/monitor"
	"github.com/mbvm/mb/monitor/auth"
	"github.com/mbvm/mb/monitor/config"
	"github.com/mbvm/mb/monitor/notify"
	"github.com/mbvm/mb/monitor/notify/channels"
	"github.com/mbvm/mb/monitor/threshold"
)

// loaded is one configuration, checked and ready to put in force.
type loaded struct {
	cfg      *config.Config
	channels map[string]notify.Configured
	users    map[string][]string // user -> channel names
	hashes   map[string]auth.Hash
	settings monitor.Settings
}

// LoadConfig reads monitor.yaml (which must be mode 0600), checking its
// notification channels with the built-in channel types.
func LoadConfig(path string) (*config.Config, error) {
	dir := filepath.Dir(path)
	return config.Load(path, config.Options{ValidateChannel: func(name string, node *yaml.Node) error {
		_, err := channels.Parse(channelMap(map[string]*yaml.Node{name: node}), dir)
		return err
	}})
}

// ParseConfig is LoadConfig for text (tests, and configs not in a file).
// name is used in messages and its directory resolves *_file paths.
func ParseConfig(data []byte, name string) (*config.Config, error) {
	dir := filepath.Dir(name)
	return config.Parse(data, name, config.Options{ValidateChannel: func(n string, node *yaml.Node) error {
		_, err := channels.Parse(channelMap(map[string]*yaml.Node{n: node}), dir)
		return err
	}})
}

// channelMap rebuilds the notification_channels mapping from its entries.
func channelMap(m map[string]*yaml.Node) *yaml.Node {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	out := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for _, n := range names {
		v := m[n]
		line := v.Line - 1
		if line < 1 {
			line = v.Line
		}
		out.Content = append(out.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: n, Line: line}, v)
	}
	return out
}

// prepare checks a configuration as a whole and builds what the service
// needs from it.
func prepare(cfg *config.Config) (*loaded, error) {
	dir := ""
	if cfg.Path != "" {
		dir = filepath.Dir(cfg.Path)
	}
	chans, err := channels.Parse(channelMap(cfg.NotificationChannels), dir)
	if err != nil {
		return nil, fmt.Errorf("%s: notification_channels: %w", cfgName(cfg), err)
	}
	ld := &loaded{cfg: cfg, channels: chans, users: map[string][]string{}, hashes: map[string]auth.Hash{}}
	for name, u := range cfg.Users {
		ld.users[name] = u.NotificationChannels
		if u.Password == "" {
			continue
		}
		h, err := auth.ParseHash(u.Password)
		if err != nil {
			return nil, fmt.Errorf("%s: users.%s.password: %w", cfgName(cfg), name, err)
		}
		ld.hashes[name] = h
	}
	if err := notify.CheckUsers(chans, ld.users); err != nil {
		return nil, fmt.Errorf("%s: %w", cfgName(cfg), err)
	}
	if err := checkListen(cfg); err != nil {
		return nil, err
	}
	ld.settings = cfg.Settings()
	// Compile the thresholds of every host's profiles now, so that a bad
	// combination is refused here rather than half-applied.
	for name, h := range cfg.Hosts {
		layers := []threshold.Spec{cfg.Thresholds}
		for _, p := range h.ThresholdConfig {
			spec, ok := cfg.ThresholdConfigs[p]
			if !ok {
				return nil, fmt.Errorf("%s: hosts.%s.threshold_config: no threshold_configs entry %q", cfgName(cfg), name, p)
			}
			layers = append(layers, spec)
		}
		if _, err := threshold.Compile(layers...); err != nil {
			return nil, fmt.Errorf("%s: hosts.%s: %w", cfgName(cfg), name, err)
		}
	}
	return ld, nil
}

func cfgName(cfg *config.Config) string {
	if cfg.Path == "" {
		return "monitor.yaml"
	}
	return cfg.Path
}

// checkListen refuses a listen address other than loopback when there are
// no users to authenticate: the API would be open to the network.
func checkListen(cfg *config.Config) error {
	if cfg.Listen == "" || len(cfg.Users) > 0 || IsLoopback(cfg.Listen) {
		return nil
	}
	return fmt.Errorf("%s: listen: %s is not a loopback address, and without users anyone who can reach it could read and change the monitor; "+
		"add users: with a password hash (make one with `mb monitor passwd NAME`), or listen on 127.0.0.1 or [::1]", cfgName(cfg), cfg.Listen)
}

// IsLoopback reports whether a listen address (host:port) binds only to
// loopback: 127.0.0.0/8, ::1 or localhost. An empty host binds every
// interface and is not loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Package plugins holds the data collectors of mb-agent's heartbeat mode,
// named and shaped like hbc's plugins: os_info (an info plugin, collected
// once and again when the server asks), and the monitors cpu_monitor,
// memory_monitor, disk_monitor, network_monitor, ping_monitor and
// nagios_runner, each collected on its own interval. They read Linux's
// /proc and statfs(2); they do not start programs, except nagios_runner
// its configured checks.
//
// A plugin's result is a flat map of field names to numbers, strings,
// booleans, or nested maps and lists (sent as @-JSON by the heartbeat
// client).
package plugins

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// DefaultMonitorInterval is a monitor plugin's interval when its config
// gives none.
const DefaultMonitorInterval = 30 * time.Second

// Fields is one collection's data.
type Fields map[string]any

// Plugin collects one kind of data.
type Plugin interface {
	// Name is the plugin's hbc name, e.g. cpu_monitor.
	Name() string
	// Collect gathers the data. An error is reported by the caller, and
	// the plugin is tried again at its next interval.
	Collect(ctx context.Context) (Fields, error)
}

// Scheduled is a plugin with its schedule. Info plugins (Interval 0) run
// once at start and again when the server asks for an update.
type Scheduled struct {
	Plugin
	Interval time.Duration
}

// Info reports whether the plugin is an info plugin.
func (s Scheduled) Info() bool { return s.Interval == 0 }

// Config is the "plugins" section of hbc's config: plugin name to its
// options. Every plugin knows "interval" (seconds) and "enabled" (false
// turns it off).
type Config map[string]map[string]any

// Names lists the plugins this package has, in the order they run.
var Names = []string{"os_info", "cpu_monitor", "memory_monitor", "disk_monitor", "network_monitor", "ping_monitor", "nagios_runner"}

// Build makes the plugins the config asks for. os_info and the cpu,
// memory, disk and network monitors are on unless "enabled: false";
// ping_monitor is on when it has hosts, nagios_runner when it has
// commands. Unknown plugin names are logged and skipped (hbc's other
// plugins, such as zfs_monitor, are not mb-agent's). A bad option, or a
// nagios command that is not an absolute path to an executable, is an
// error naming it.
func Build(cfg Config, version string, log *slog.Logger) ([]Scheduled, error) {
	if log == nil {
		log = slog.Default()
	}
	for name := range cfg {
		if !slices.Contains(Names, name) {
			log.Warn("unknown plugin in the config, skipped", "plugin", name, "known", strings.Join(Names, ", "))
		}
	}
	var out []Scheduled
	for _, name := range Names {
		opts := options(cfg[name])
		on, err := opts.boolean("enabled", true)
		if err != nil {
			return nil, fmt.Errorf("plugins.%s: %w", name, err)
		}
		if !on {
			continue
		}
		interval, err := opts.seconds("interval", DefaultMonitorInterval)
		if err != nil {
			return nil, fmt.Errorf("plugins.%s: %w", name, err)
		}
		var p Plugin
		switch name {
		case "os_info":
			p, interval = osInfo{version: version}, 0
		case "cpu_monitor":
			perCore, err := opts.boolean("per_core", false)
			if err != nil {
				return nil, fmt.Errorf("plugins.%s: %w", name, err)
			}
			p = &cpuMonitor{perCore: perCore}
		case "memory_monitor":
			p = memoryMonitor{}
		case "disk_monitor":
			mounts, err := opts.strings("mounts", nil)
			if err != nil {
				return nil, fmt.Errorf("plugins.%s: %w", name, err)
			}
			p = &diskMonitor{mounts: mounts}
		case "network_monitor":
			skip, err := opts.strings("skip_interfaces", []string{"lo"})
			if err != nil {
				return nil, fmt.Errorf("plugins.%s: %w", name, err)
			}
			p = &networkMonitor{skip: skip}
		case "ping_monitor":
			pm, err := newPingMonitor(opts, log)
			if err != nil {
				return nil, fmt.Errorf("plugins.%s: %w", name, err)
			}
			if pm == nil {
				continue
			}
			p = pm
		case "nagios_runner":
			nr, err := newNagiosRunner(opts)
			if err != nil {
				return nil, fmt.Errorf("plugins.%s: %w", name, err)
			}
			if nr == nil {
				continue
			}
			p = nr
		}
		out = append(out, Scheduled{Plugin: p, Interval: interval})
	}
	return out, nil
}

// options reads one plugin's config values.
type options map[string]any

func (o options) boolean(key string, def bool) (bool, error) {
	v, ok := o[key]
	if !ok || v == nil {
		return def, nil
	}
	switch b := v.(type) {
	case bool:
		return b, nil
	case float64:
		return b != 0, nil
	case int:
		return b != 0, nil
	}
	return false, fmt.Errorf("%s: want true or false, got %v", key, v)
}

func (o options) number(key string) (float64, bool, error) {
	v, ok := o[key]
	if !ok || v == nil {
		return 0, false, nil
	}
	switch n := v.(type) {
	case float64:
		return n, true, nil
	case int:
		return float64(n), true, nil
	case int64:
		return float64(n), true, nil
	case uint64:
		return float64(n), true, nil
	}
	return 0, false, fmt.Errorf("%s: want a number, got %v", key, v)
}

func (o options) seconds(key string, def time.Duration) (time.Duration, error) {
	n, ok, err := o.number(key)
	if err != nil || !ok {
		return def, err
	}
	if n <= 0 || n > 86400*365 {
		return 0, fmt.Errorf("%s: want a positive number of seconds, got %v", key, n)
	}
	return time.Duration(n * float64(time.Second)), nil
}

func (o options) strings(key string, def []string) ([]string, error) {
	v, ok := o[key]
	if !ok || v == nil {
		return def, nil
	}
	switch l := v.(type) {
	case []string:
		return l, nil
	case []any:
		out := make([]string, 0, len(l))
		for _, e := range l {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("%s: want a list of strings, got %v", key, v)
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: want a list of strings, got %v", key, v)
}

// round keeps two decimals of a percentage or rate.
func round(f float64) float64 {
	if f < 0 {
		return -float64(int64(-f*100+0.5)) / 100
	}
	return float64(int64(f*100+0.5)) / 100
}

func percent(part, whole uint64) float64 {
	if whole == 0 {
		return 0
	}
	return round(float64(part) / float64(whole) * 100)
}

package heartbeat

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mbvm/mb/agent/plugins"
)

// DefaultPort is hbd's UDP port.
const DefaultPort = 50003

// DefaultInterval is the heartbeat interval when the config gives none.
const DefaultInterval = 10 * time.Second

// KeyEnv holds the shared HMAC key when the config has none; the
// environment, unlike a command line, is not readable by other users.
const KeyEnv = "MB_HEARTBEAT_KEY"

// Config is hbc's config file (~/.hbc.json or ~/.hbc.yaml, same keys),
// with mb's hmac_key.
type Config struct {
	// Port is hb_port, the server's UDP port.
	Port int
	// Interval is the heartbeat interval.
	Interval time.Duration
	// Owner claims the host for a user of the server.
	Owner string
	// Key is hmac_key: every datagram is signed with it, and CMD and UPD
	// are honoured only when signed with it.
	Key string
	// Plugins is the plugins section.
	Plugins plugins.Config
	// Path is the file the config came from, or "" for the defaults.
	Path string
}

// DefaultPaths are the config files read when -c is not given, first
// found wins: hbc_mini's JSON, then hbc's YAML.
func DefaultPaths() []string {
	home, err := os.UserHomeDir()
	if err != nil {
		return nil
	}
	return []string{filepath.Join(home, ".hbc.json"), filepath.Join(home, ".hbc.yaml")}
}

// LoadConfig reads the config at path; with path "" it reads the first of
// DefaultPaths that exists, or returns the defaults. Keys it does not know
// are logged and ignored, so an hbc config carries over.
func LoadConfig(path string, log *slog.Logger) (Config, error) {
	c := Config{Port: DefaultPort, Interval: DefaultInterval}
	if path == "" {
		for _, p := range DefaultPaths() {
			if _, err := os.Stat(p); err == nil {
				path = p
				break
			}
		}
		if path == "" {
			return c, nil
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return c, fmt.Errorf("config file %s does not exist: give an existing file with -c, or none to use ~/.hbc.json or ~/.hbc.yaml", path)
		}
		return c, fmt.Errorf("read the config: %w", err)
	}
	c.Path = path
	// YAML reads JSON too.
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return c, fmt.Errorf("config %s is neither valid JSON nor YAML: %w", path, err)
	}
	var unknown []string
	for k, v := range raw {
		var err error
		switch k {
		case "hb_port":
			var n float64
			if n, err = number(v); err == nil && (n < 1 || n > 65535 || n != float64(int(n))) {
				err = fmt.Errorf("want a port number, got %v", v)
			}
			c.Port = int(n)
		case "interval":
			var n float64
			if n, err = number(v); err == nil && (n <= 0 || n > 86400) {
				err = fmt.Errorf("want seconds between 0 and 86400, got %v", v)
			}
			c.Interval = time.Duration(n * float64(time.Second))
		case "owner":
			c.Owner, err = str(v)
		case "hmac_key":
			c.Key, err = str(v)
		case "plugins":
			c.Plugins, err = pluginConfig(v)
		default:
			unknown = append(unknown, k)
		}
		if err != nil {
			return c, fmt.Errorf("config %s: %s: %w", path, k, err)
		}
	}
	if len(unknown) > 0 && log != nil {
		sort.Strings(unknown)
		log.Warn("config keys mb-agent does not use, ignored", "file", path, "keys", unknown)
	}
	return c, nil
}

func number(v any) (float64, error) {
	switch n := v.(type) {
	case int:
		return float64(n), nil
	case int64:
		return float64(n), nil
	case uint64:
		return float64(n), nil
	case float64:
		return n, nil
	}
	return 0, fmt.Errorf("want a number, got %v", v)
}

func str(v any) (string, error) {
	if v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("want a string, got %v", v)
	}
	return s, nil
}

func pluginConfig(v any) (plugins.Config, error) {
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("want a map of plugin names to their options, got %v", v)
	}
	out := plugins.Config{}
	for name, o := range m {
		if o == nil {
			out[name] = map[string]any{}
			continue
		}
		om, ok := o.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: want a map of options, got %v", name, o)
		}
		out[name] = om
	}
	return out, nil
}

package config

import (
	"fmt"
	"math"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mbvm/mb/monitor/threshold"
)

type parser struct {
	name string
	dir  string
	opts Options
	// lines records where keys checked after parsing were given
	// ("hosts.web.owner" -> 12), for messages.
	lines map[string]int
}

// at prefixes a message with the file and the line of a recorded key.
func (p *parser) at(key string) string {
	if l, ok := p.lines[key]; ok {
		return fmt.Sprintf("%s:%d", p.name, l)
	}
	return p.name
}

// topKeys are the accepted top-level keys.
var topKeys = []string{
	"interval", "grace", "threshold_renotify_interval", "metrics_interval",
	"thresholds", "threshold_configs", "notification_channels", "users", "default_owner", "hosts",
	"journal_enabled", "journal_dir", "journal_file", "journal_max_size", "journal_max_backups",
	"listen", "heartbeat_listen", "hb_port", "max_hosts", "register_token", "register_token_file",
	"dyndomains", "nsupdate_bin", "rollup_retention", "rollup_minute_retention",
	"hbd_host", "hbd_port", "hmac_key", "hmac_key_file", "hmac_required",
	"nsupdate_key", "nsupdate_server", "dyndns_ttl",
}

// hbdIgnored are hbd keys mb accepts and does not use (so an hbd config
// loads), with why.
var hbdIgnored = map[string]string{
	"ws_port":   "live updates are served on listen",
	"wss_port":  "live updates are served on listen",
	"cert_path": "TLS is not terminated by mb",
	"wss_pem":   "TLS is not terminated by mb",
	"wss_key":   "TLS is not terminated by mb",
	"pickfile":  "state is kept in monitor.db",
	"pidfile":   "mb daemon has its own",
	"logfile":   "mb logs through the daemon's log",
	"oauth":     "OAuth login is not supported",
}

// pairs walks a mapping node's key/value pairs, refusing duplicates and
// keys outside accepted (nil accepts any key).
func (p *parser) pairs(n *yaml.Node, what string, accepted []string, fn func(key string, k, v *yaml.Node) error) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return p.errAt(n, "%s must be a mapping (key: value lines), not %s", what, kindName(n))
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return p.errAt(k, "%s: keys must be plain names", what)
		}
		key := k.Value
		if line, dup := seen[key]; dup {
			return p.errAt(k, "%s: key %q given twice (first on line %d)", what, key, line)
		}
		seen[key] = k.Line
		if accepted != nil && !contains(accepted, key) {
			prefix := what + ": "
			if what == "" {
				prefix = ""
				accepted = topKeys // hbd's unused keys are not worth listing
			}
			return p.errAt(k, "%sunknown key %q (accepted: %s)", prefix, key, strings.Join(accepted, ", "))
		}
		if p.lines != nil {
			if what == "" {
				p.lines[key] = k.Line
			} else {
				p.lines[what+"."+key] = k.Line
			}
		}
		if v.Kind == yaml.AliasNode {
			v = v.Alias
		}
		if err := fn(key, k, v); err != nil {
			return err
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "that"
}

func (p *parser) top(root *yaml.Node, c *Config) error {
	var tokenFile, hmacFile *yaml.Node
	var hbPort, hbListen *yaml.Node
	var hbdHost, hbdPort, listenNode *yaml.Node
	accepted := append(append([]string(nil), topKeys...), sortedKeys(hbdIgnored)...)
	err := p.pairs(root, "", accepted, func(key string, k, v *yaml.Node) error {
		var err error
		switch key {
		case "interval":
			c.Interval, err = p.duration(v, key, false)
		case "grace":
			c.Grace, err = p.duration(v, key, true)
		case "threshold_renotify_interval":
			c.Renotify, err = p.duration(v, key, false)
		case "metrics_interval":
			c.MetricsInterval, err = p.duration(v, key, false)
		case "thresholds":
			c.Thresholds, err = p.thresholds(v, "thresholds")
		case "threshold_configs":
			err = p.pairs(v, key, nil, func(name string, _, pv *yaml.Node) error {
				return p.pairs(pv, "threshold_configs."+name, []string{"thresholds"}, func(_ string, _, tv *yaml.Node) error {
					spec, err := p.thresholds(tv, "threshold_configs."+name+".thresholds")
					c.ThresholdConfigs[name] = spec
					return err
				})
			})
		case "notification_channels":
			err = p.pairs(v, key, nil, func(name string, _, cv *yaml.Node) error {
				if cv.Kind != yaml.MappingNode {
					return p.errAt(cv, "notification_channels.%s must be a mapping with a type and its fields", name)
				}
				if p.opts.ValidateChannel != nil {
					if err := p.opts.ValidateChannel(name, cv); err != nil {
						return p.errAt(cv, "notification_channels.%s: %v", name, err)
					}
				}
				c.NotificationChannels[name] = cv
				return nil
			})
		case "users":
			err = p.pairs(v, key, nil, func(name string, _, uv *yaml.Node) error {
				u, err := p.user(name, uv)
				c.Users[name] = u
				return err
			})
		case "default_owner":
			c.DefaultOwner, err = p.str(v, key)
		case "hosts":
			err = p.pairs(v, key, nil, func(name string, _, hv *yaml.Node) error {
				h, err := p.host(name, hv)
				c.Hosts[name] = h
				return err
			})
		case "journal_enabled":
			c.Journal.Enabled, err = p.boolean(v, key)
		case "journal_dir":
			c.Journal.Dir, err = p.str(v, key)
		case "journal_file":
			c.Journal.File, err = p.str(v, key)
			if err == nil && (c.Journal.File == "" || strings.ContainsRune(c.Journal.File, '/')) {
				err = p.errAt(v, "journal_file must be a file name without a directory (put the directory in journal_dir)")
			}
		case "journal_max_size":
			c.Journal.MaxSize, err = p.size(v, key)
		case "journal_max_backups":
			var n int
			n, err = p.integer(v, key, 0)
			c.Journal.MaxBackups = n
		case "listen":
			listenNode = v
			c.Listen, err = p.addr(v, key)
		case "hbd_host":
			hbdHost = v
			_, err = p.str(v, key)
		case "hbd_port":
			hbdPort = v
			var n int
			n, err = p.integer(v, key, 1)
			if err == nil && n > 65535 {
				err = p.errAt(v, "hbd_port %d is not a port (accepted: 1 to 65535)", n)
			}
		case "hmac_key":
			c.HMACKey, err = p.str(v, key)
		case "hmac_key_file":
			hmacFile = v
		case "hmac_required":
			c.HMACRequired, err = p.boolean(v, key)
		case "nsupdate_key":
			c.NsupdateKey, err = p.str(v, key)
		case "nsupdate_server":
			c.NsupdateServer, err = p.str(v, key)
		case "dyndns_ttl":
			c.DynDNSTTL, err = p.duration(v, key, false)
		case "heartbeat_listen":
			hbListen = v
			c.HeartbeatListen, err = p.addr(v, key)
		case "hb_port":
			hbPort = v
			var n int
			n, err = p.integer(v, key, 1)
			if err == nil && n > 65535 {
				err = p.errAt(v, "hb_port %d is not a port (accepted: 1 to 65535)", n)
			}
			if err == nil && hbListen == nil {
				c.HeartbeatListen = ":" + strconv.Itoa(n)
			}
		case "max_hosts":
			c.MaxHosts, err = p.integer(v, key, 0)
		case "register_token":
			c.RegisterToken, err = p.str(v, key)
		case "register_token_file":
			tokenFile = v
		case "rollup_retention":
			c.RollupRetention, err = p.duration(v, key, false)
		case "rollup_minute_retention":
			c.RollupMinuteRetention, err = p.duration(v, key, false)
		case "dyndomains":
			c.DynDomains, err = p.strList(v, key)
		case "nsupdate_bin":
			c.NsupdateBin, err = p.str(v, key)
		default:
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s:%d: hbd key %q is not used by mb (%s)", p.name, k.Line, key, hbdIgnored[key]))
		}
		return err
	})
	if err != nil {
		return err
	}
	if hbPort != nil && hbListen != nil {
		return p.errAt(hbPort, "give heartbeat_listen or its hbd synonym hb_port, not both")
	}
	switch {
	case (hbdHost != nil || hbdPort != nil) && listenNode != nil:
		// listen wins; the hbd keys are carried over unused.
		for _, n := range []struct {
			key string
			v   *yaml.Node
		}{{"hbd_port", hbdPort}, {"hbd_host", hbdHost}} {
			if n.v != nil {
				c.Warnings = append(c.Warnings, fmt.Sprintf("%s:%d: hbd key %q is not used by mb (listen is given)", p.name, n.v.Line, n.key))
			}
		}
	case hbdPort != nil:
		host := ""
		if hbdHost != nil {
			host = hbdHost.Value
		}
		c.Listen = net.JoinHostPort(host, hbdPort.Value)
		p.lines["listen"] = hbdPort.Line
	case hbdHost != nil:
		return p.errAt(hbdHost, "hbd_host needs hbd_port (or use listen: HOST:PORT)")
	}
	// Warnings in the file's order.
	lineOf := func(w string) int {
		rest := strings.TrimPrefix(w, p.name+":")
		n, _ := strconv.Atoi(rest[:max(strings.IndexByte(rest, ':'), 0)])
		return n
	}
	slices.SortStableFunc(c.Warnings, func(a, b string) int { return lineOf(a) - lineOf(b) })
	if hmacFile != nil {
		if c.HMACKey != "" {
			return p.errAt(hmacFile, "give hmac_key or hmac_key_file, not both")
		}
		if c.HMACKey, err = p.secretFile(hmacFile, "hmac_key_file"); err != nil {
			return err
		}
	}
	if c.HMACRequired && c.HMACKey == "" {
		return fmt.Errorf("%s: hmac_required needs hmac_key (or hmac_key_file)", p.at("hmac_required"))
	}
	if tokenFile != nil {
		if c.RegisterToken != "" {
			return p.errAt(tokenFile, "give register_token or register_token_file, not both")
		}
		if c.RegisterToken, err = p.secretFile(tokenFile, "register_token_file"); err != nil {
			return err
		}
	}
	return nil
}

func (p *parser) secretFile(v *yaml.Node, key string) (string, error) {
	path, err := p.str(v, key)
	if err != nil {
		return "", err
	}
	s, err := ReadSecretFile(p.dir, path)
	if err != nil {
		return "", p.errAt(v, "%s: %v", key, err)
	}
	return s, nil
}

var userKeys = []string{"full_name", "admin", "password", "password_file", "notification_channels"}

// passwordHash is hbd's (Werkzeug's) PBKDF2 layout.
var passwordHash = regexp.MustCompile(`^pbkdf2:sha256(:[0-9]+)?\$[^$]+\$[0-9a-f]+$`)

func (p *parser) user(name string, n *yaml.Node) (User, error) {
	u := User{Name: name}
	var pwFile *yaml.Node
	var pwNode *yaml.Node
	err := p.pairs(n, "users."+name, userKeys, func(key string, _, v *yaml.Node) error {
		var err error
		where := "users." + name + "." + key
		switch key {
		case "full_name":
			u.FullName, err = p.str(v, where)
		case "admin":
			u.Admin, err = p.boolean(v, where)
		case "password":
			pwNode = v
			u.Password, err = p.str(v, where)
		case "password_file":
			pwFile = v
		case "notification_channels":
			u.NotificationChannels, err = p.strList(v, where)
		}
		return err
	})
	if err != nil {
		return u, err
	}
	if pwFile != nil {
		if pwNode != nil {
			return u, p.errAt(pwFile, "users.%s: give password or password_file, not both", name)
		}
		pwNode = pwFile
		if u.Password, err = p.secretFile(pwFile, "users."+name+".password_file"); err != nil {
			return u, err
		}
	}
	if u.Password != "" && !passwordHash.MatchString(u.Password) {
		// Never echo the value: it may be a plain password.
		return u, p.errAt(pwNode, "users.%s.password is not a pbkdf2:sha256 hash (accepted: pbkdf2:sha256:ITERATIONS$SALT$HEX, as hbd passwd makes)", name)
	}
	return u, nil
}

var hostKeys = []string{"owner", "managers", "monitors", "watch", "threshold_config", "dyndns", "interval", "grace", "socktop", "token"}

func (p *parser) host(name string, n *yaml.Node) (Host, error) {
	h := Host{Watch: true}
	err := p.pairs(n, "hosts."+name, hostKeys, func(key string, _, v *yaml.Node) error {
		var err error
		where := "hosts." + name + "." + key
		switch key {
		case "owner":
			h.Owner, err = p.str(v, where)
		case "managers":
			h.Managers, err = p.strList(v, where)
		case "monitors":
			h.Monitors, err = p.strList(v, where)
		case "watch":
			h.Watch, err = p.boolean(v, where)
		case "threshold_config":
			h.ThresholdConfig, err = p.strList(v, where)
		case "dyndns":
			h.DynDNS, err = p.boolean(v, where)
		case "interval":
			h.Interval, err = p.duration(v, where, false)
		case "grace":
			h.Grace, err = p.duration(v, where, true)
		case "socktop":
			h.Socktop, err = p.str(v, where)
			if err == nil {
				err = checkSocktopURL(h.Socktop)
				if err != nil {
					err = p.errAt(v, "%s: %v", where, err)
				}
			}
		case "token":
			h.Token, err = p.str(v, where)
		}
		return err
	})
	if err == nil && h.Token != "" && h.Socktop == "" {
		err = fmt.Errorf("%s: hosts.%s.token is the socktop agent's token: it needs socktop: ws://HOST:3000/ws", p.at("hosts."+name+".token"), name)
	}
	return h, err
}

var ruleKeys = []string{"warning", "critical", "operator", "hysteresis", "count", "display"}

// thresholds reads a thresholds block: plugin, then nested field keys,
// down to a rule (a mapping with any of the rule keys).
func (p *parser) thresholds(n *yaml.Node, where string) (threshold.Spec, error) {
	spec := threshold.Spec{}
	err := p.pairs(n, where, nil, func(plugin string, _, v *yaml.Node) error {
		fields := map[string]threshold.RuleSpec{}
		spec[plugin] = fields
		return p.ruleTree(v, where+"."+plugin, "", fields)
	})
	return spec, err
}

func isRule(n *yaml.Node) bool {
	if n.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i < len(n.Content); i += 2 {
		if contains(ruleKeys, n.Content[i].Value) {
			return true
		}
	}
	return false
}

func (p *parser) ruleTree(n *yaml.Node, where, path string, out map[string]threshold.RuleSpec) error {
	if isRule(n) {
		if path == "" {
			return p.errAt(n, "%s: a rule needs a field name above it (e.g. cpu_monitor: cpu_percent: {warning: 80})", where)
		}
		rs, err := p.rule(n, where)
		out[path] = rs
		return err
	}
	if n.Kind != yaml.MappingNode || len(n.Content) == 0 {
		return p.errAt(n, "%s: expected field names down to a rule with %s", where, strings.Join(ruleKeys, ", "))
	}
	return p.pairs(n, where, nil, func(key string, _, v *yaml.Node) error {
		sub := key
		if path != "" {
			sub = path + "." + key
		}
		return p.ruleTree(v, where+"."+key, sub, out)
	})
}

func (p *parser) rule(n *yaml.Node, where string) (threshold.RuleSpec, error) {
	var rs threshold.RuleSpec
	err := p.pairs(n, where, ruleKeys, func(key string, _, v *yaml.Node) error {
		w := where + "." + key
		switch key {
		case "warning", "critical", "hysteresis":
			f, err := p.number(v, w)
			if err != nil {
				return err
			}
			switch key {
			case "warning":
				rs.Warning = &f
			case "critical":
				rs.Critical = &f
			default:
				if f < 0 || f >= 1 {
					return p.errAt(v, "%s: %v is out of range (accepted: a fraction from 0 up to but not including 1, e.g. 0.1 for 10%%)", w, f)
				}
				rs.Hysteresis = &f
			}
		case "operator":
			s, err := p.str(v, w)
			if err != nil {
				return err
			}
			if _, err := threshold.ParseOp(s); err != nil {
				return p.errAt(v, "%s: %v", w, err)
			}
			rs.Operator = &s
		case "count":
			c, err := p.integer(v, w, 0)
			if err != nil {
				return err
			}
			rs.Count = &c
		case "display":
			s, err := p.str(v, w)
			if err != nil {
				return err
			}
			rs.Display = &s
		}
		return nil
	})
	if err != nil {
		return rs, err
	}
	if _, err := rs.Compile(); err != nil {
		return rs, p.errAt(n, "%s: %v", where, err)
	}
	return rs, nil
}

// Scalars.

func (p *parser) scalar(v *yaml.Node, where string) (*yaml.Node, error) {
	if v.Kind != yaml.ScalarNode {
		return nil, p.errAt(v, "%s must be a single value, not %s", where, kindName(v))
	}
	return v, nil
}

func (p *parser) str(v *yaml.Node, where string) (string, error) {
	if _, err := p.scalar(v, where); err != nil {
		return "", err
	}
	if v.Tag == "!!null" {
		return "", nil
	}
	return v.Value, nil
}

func (p *parser) strList(v *yaml.Node, where string) ([]string, error) {
	if v.Kind == yaml.ScalarNode {
		if v.Tag == "!!null" || v.Value == "" {
			return nil, nil
		}
		return []string{v.Value}, nil
	}
	if v.Kind != yaml.SequenceNode {
		return nil, p.errAt(v, "%s must be a name or a list of names", where)
	}
	out := make([]string, 0, len(v.Content))
	for _, it := range v.Content {
		if it.Kind != yaml.ScalarNode || it.Value == "" {
			return nil, p.errAt(it, "%s: each entry must be a name", where)
		}
		out = append(out, it.Value)
	}
	return out, nil
}

func (p *parser) boolean(v *yaml.Node, where string) (bool, error) {
	if _, err := p.scalar(v, where); err != nil {
		return false, err
	}
	switch strings.ToLower(v.Value) {
	case "true", "yes", "on", "1":
		return true, nil
	case "false", "no", "off", "0":
		return false, nil
	}
	return false, p.errAt(v, "%s: %q is not a boolean (accepted: true, false)", where, v.Value)
}

func (p *parser) number(v *yaml.Node, where string) (float64, error) {
	if _, err := p.scalar(v, where); err != nil {
		return 0, err
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v.Value), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, p.errAt(v, "%s: %q is not a number (accepted: a number such as 80 or 0.5)", where, v.Value)
	}
	return f, nil
}

func (p *parser) integer(v *yaml.Node, where string, min int) (int, error) {
	if _, err := p.scalar(v, where); err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(v.Value))
	if err != nil || n < min {
		return 0, p.errAt(v, "%s: %q is not a whole number of at least %d", where, v.Value, min)
	}
	return n, nil
}

// duration reads plain seconds (as hbd does; fractions allowed) or a Go
// duration. zeroOK allows 0.
func (p *parser) duration(v *yaml.Node, where string, zeroOK bool) (time.Duration, error) {
	if _, err := p.scalar(v, where); err != nil {
		return 0, err
	}
	s := strings.TrimSpace(v.Value)
	var d time.Duration
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) && math.Abs(f) < 1e9 {
		d = time.Duration(f * float64(time.Second))
	} else if pd, err := time.ParseDuration(s); err == nil {
		d = pd
	} else {
		return 0, p.errAt(v, "%s: %q is not a duration (accepted: seconds such as 20, or a Go duration such as 20s, 5m or 1h30m)", where, v.Value)
	}
	if d < 0 || (d == 0 && !zeroOK) {
		return 0, p.errAt(v, "%s: %q must be more than zero", where, v.Value)
	}
	return d, nil
}

// size reads a byte count: a whole number, or one with a unit (k, M, G
// with or without B or iB; all powers of 1024).
func (p *parser) size(v *yaml.Node, where string) (int64, error) {
	if _, err := p.scalar(v, where); err != nil {
		return 0, err
	}
	s := strings.TrimSpace(v.Value)
	num := strings.TrimRightFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.ToLower(strings.TrimSpace(s[len(num):]))
	unit = strings.TrimSuffix(strings.TrimSuffix(unit, "b"), "i")
	mult := map[string]int64{"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit]
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || mult == 0 || n <= 0 || n > math.MaxInt64/mult {
		return 0, p.errAt(v, "%s: %q is not a size (accepted: bytes such as 104857600, or 100MiB, 512k, 1G)", where, v.Value)
	}
	return n * mult, nil
}

// addr reads a host:port listen address.
func (p *parser) addr(v *yaml.Node, where string) (string, error) {
	s, err := p.str(v, where)
	if err != nil || s == "" {
		return s, err
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", p.errAt(v, "%s: %q is not an address (accepted: host:port such as 127.0.0.1:50004 or :50003)", where, s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", p.errAt(v, "%s: port %q is not a number from 0 to 65535", where, port)
	}
	return s, nil
}

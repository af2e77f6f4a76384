package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mbvm/mb/monitor"
)

const hash = "pbkdf2:sha256:260000$abcdEFGH$0123456789abcdef"

// full is an hbd-style config with mb's keys.
var full = `
interval: 20
grace: 2s
threshold_renotify_interval: 1h
metrics_interval: 15
rollup_minute_retention: 24h
hb_port: 50003
listen: 0.0.0.0:50004
max_hosts: 100
journal_dir: /var/log/heartbeat
journal_max_size: 100MiB
journal_max_backups: 3
hbd_port: 50004
pickfile: ~/.hb.pick
dyndomains: [example.com]
thresholds:
  cpu_monitor:
    cpu_percent:
      warning: 80.0
      critical: 90
      operator: ">"
      hysteresis: 0.1
      count: 2
      display: "CPU {cpu_percent}% ({op_symbol}{threshold_value})"
  disk_monitor:
    partitions:
      /:
        percent: {warning: 80, critical: 90}
        free_gb: {warning: 10, critical: 5, operator: "<"}
  nagios_runner:
    status_code:
      operator: nagios
      display: "{check_name}: {output}"
  rtt:
    webserver01: {warning: 100, critical: 500}
threshold_configs:
  default:
    thresholds:
      cpu_monitor:
        cpu_percent: {warning: 80, critical: 90}
  tight_cpu:
    thresholds:
      cpu_monitor:
        cpu_percent: {warning: 60, critical: 75}
notification_channels:
  pushover_ops:
    type: pushover
    token: T
    user: U
  email_ops:
    type: email
    smtp_server: smtp.example.com
users:
  alice:
    full_name: Alice Smith
    password: "` + hash + `"
    admin: true
    notification_channels: [pushover_ops]
  bob:
    notification_channels: [email_ops]
default_owner: alice
hosts:
  webserver01:
    dyndns: true
    owner: alice
    managers: [bob]
    monitors: []
  database01:
    watch: false
    threshold_config: [default, tight_cpu]
  web-02:
    threshold_config: default
    interval: 1m
`

func TestParseFull(t *testing.T) {
	var seen []string
	c, err := Parse([]byte(full), "/etc/mb/monitor.yaml", Options{ValidateChannel: func(name string, n *yaml.Node) error {
		seen = append(seen, name)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Interval != 20*time.Second || c.Grace != 2*time.Second || c.Renotify != time.Hour || c.MetricsInterval != 15*time.Second {
		t.Errorf("durations: %v %v %v %v", c.Interval, c.Grace, c.Renotify, c.MetricsInterval)
	}
	if c.RollupRetention != 7*24*time.Hour || c.RollupMinuteRetention != 24*time.Hour {
		t.Errorf("retention %v %v", c.RollupRetention, c.RollupMinuteRetention)
	}
	if c.HeartbeatListen != ":50003" || c.Listen != "0.0.0.0:50004" || c.MaxHosts != 100 {
		t.Errorf("listen %q hb %q max %d", c.Listen, c.HeartbeatListen, c.MaxHosts)
	}
	if c.Journal != (Journal{Enabled: true, Dir: "/var/log/heartbeat", File: DefaultJournalFile, MaxSize: 100 << 20, MaxBackups: 3}) {
		t.Errorf("journal %+v", c.Journal)
	}
	r := c.Thresholds["cpu_monitor"]["cpu_percent"]
	if *r.Warning != 80 || *r.Critical != 90 || *r.Hysteresis != 0.1 || *r.Count != 2 || *r.Operator != ">" {
		t.Errorf("cpu rule %+v", r)
	}
	if fr := c.Thresholds["disk_monitor"]["partitions./.free_gb"]; fr.Operator == nil || *fr.Operator != "<" {
		t.Errorf("nested rule: %+v (disk: %v)", fr, c.Thresholds["disk_monitor"])
	}
	if _, ok := c.Thresholds["rtt"]["webserver01"]; !ok {
		t.Error("rtt rule missing")
	}
	if len(c.ThresholdConfigs) != 2 || *c.ThresholdConfigs["tight_cpu"]["cpu_monitor"]["cpu_percent"].Warning != 60 {
		t.Errorf("profiles %+v", c.ThresholdConfigs)
	}
	if strings.Join(seen, ",") != "email_ops,pushover_ops" && strings.Join(seen, ",") != "pushover_ops,email_ops" {
		t.Errorf("validator saw %v", seen)
	}
	if n := c.NotificationChannels["pushover_ops"]; n == nil || n.Kind != yaml.MappingNode {
		t.Errorf("channel node %+v", n)
	}
	if u := c.Users["alice"]; !u.Admin || u.FullName != "Alice Smith" || u.Password != hash || u.NotificationChannels[0] != "pushover_ops" {
		t.Errorf("alice %+v", u)
	}
	if h := c.Hosts["database01"]; h.Watch || strings.Join(h.ThresholdConfig, ",") != "default,tight_cpu" {
		t.Errorf("database01 %+v", h)
	}
	if h := c.Hosts["web-02"]; !h.Watch || h.ThresholdConfig[0] != "default" || h.Interval != time.Minute {
		t.Errorf("web-02 %+v", h)
	}
	if h := c.Hosts["webserver01"]; !h.DynDNS || h.Owner != "alice" || h.Managers[0] != "bob" {
		t.Errorf("webserver01 %+v", h)
	}
	if got, err := c.SecretFile("token"); err == nil || got != "" || !strings.Contains(err.Error(), "/etc/mb/token") {
		t.Errorf("SecretFile resolves relative to the config: %q %v", got, err)
	}
	if len(c.Warnings) != 2 || !strings.Contains(c.Warnings[0], `monitor.yaml:13: hbd key "hbd_port"`) {
		t.Errorf("warnings %q", c.Warnings)
	}
	// The settings feed an engine as they are.
	if _, err := monitor.New(monitor.Options{Settings: c.Settings()}); err != nil {
		t.Errorf("engine refused the settings: %v", err)
	}
}

func TestParseDefaults(t *testing.T) {
	for _, text := range []string{"", "# nothing\n", "threshold_configs: {}\n"} {
		c, err := Parse([]byte(text), "", Options{})
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		if c.RollupMinuteRetention != DefaultRollupRetention || c.Grace != 2*time.Second || c.Renotify != time.Hour || c.MetricsInterval != 30*time.Second || !c.Journal.Enabled || c.Journal.MaxSize != DefaultJournalMaxSize || c.Journal.MaxBackups != 10 {
			t.Errorf("defaults %+v", c)
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, text string
		want       []string
	}{
		{"unknown top key", "interval: 20\nintervall: 3\n", []string{"monitor.yaml:2: unknown key \"intervall\" (accepted: interval, grace"}},
		{"bad duration", "grace: 5x\n", []string{":1:", `"5x" is not a duration`, "20s"}},
		{"zero interval", "interval: 0\n", []string{"more than zero"}},
		{"bad operator", "thresholds:\n  cpu_monitor:\n    cpu_percent:\n      warning: 1\n      operator: '~'\n", []string{":5:", `unknown operator "~"`, `"nagios"`}},
		{"unknown rule key", "thresholds:\n  cpu_monitor:\n    cpu_percent:\n      warning: 1\n      critcal: 2\n", []string{":5:", `unknown key "critcal"`, "warning, critical, operator"}},
		{"bad number", "thresholds:\n  cpu_monitor:\n    cpu_percent: {warning: high}\n", []string{":3:", `"high" is not a number`}},
		{"hysteresis range", "thresholds:\n  c:\n    f: {warning: 1, hysteresis: 10}\n", []string{"out of range"}},
		{"empty rule tree", "thresholds:\n  c:\n    f: 3\n", []string{":3:", "expected field names down to a rule"}},
		{"unknown host key", "hosts:\n  web:\n    ownr: alice\n", []string{":3:", `unknown key "ownr"`, "owner, managers"}},
		{"bad bool", "hosts:\n  web:\n    watch: maybe\n", []string{`"maybe" is not a boolean`}},
		{"unknown profile", "threshold_configs:\n  a:\n    thresholds: {}\nhosts:\n  web:\n    threshold_config: [a, b]\n", []string{"monitor.yaml:6:", `unknown profile "b"`, "threshold_configs: a"}},
		{"unknown user", "users:\n  alice: {}\nhosts:\n  web:\n    owner: alcie\n", []string{"monitor.yaml:5:", `unknown user "alcie"`, "users: alice"}},
		{"unknown channel", "notification_channels:\n  a: {type: email}\nusers:\n  alice:\n    notification_channels: [b]\n", []string{"monitor.yaml:5:", `unknown channel "b"`, "notification_channels: a"}},
		{"plain password", "users:\n  alice:\n    password: hunter2\n", []string{":3:", "not a pbkdf2:sha256 hash"}},
		{"duplicate key", "interval: 1\ninterval: 2\n", []string{":2:", `"interval" given twice (first on line 1)`}},
		{"hb_port and heartbeat_listen", "hb_port: 1\nheartbeat_listen: ':2'\n", []string{"not both"}},
		{"bad port", "hb_port: 70000\n", []string{"not a port"}},
		{"bad listen", "listen: localhost\n", []string{"not an address"}},
		{"bad size", "journal_max_size: 10XB\n", []string{"not a size"}},
		{"journal_file with dir", "journal_file: a/b\n", []string{"without a directory"}},
		{"channel not a mapping", "notification_channels:\n  a: email\n", []string{":2:", "must be a mapping"}},
		{"not a mapping", "- a\n", []string{"must be a mapping"}},
		{"yaml syntax", "a: [\n", []string{"monitor.yaml"}},
		{"open listen without users", "listen: 0.0.0.0:50004\n", []string{"monitor.yaml:1:", "reachable from other machines", "listen on 127.0.0.1"}},
		{"open listen, users without passwords", "listen: ':50004'\nusers:\n  a: {}\n", []string{"no user has a password"}},
		{"hbd_host without hbd_port", "hbd_host: 127.0.0.1\n", []string{":1:", "hbd_host needs hbd_port"}},
		{"hmac_required without key", "hmac_required: true\n", []string{":1:", "hmac_required needs hmac_key"}},
		{"hmac_key and file", "hmac_key: a\nhmac_key_file: k\n", []string{":2:", "not both"}},
		{"socktop not ws", "hosts:\n  pi:\n    socktop: http://pi:3000/ws\n", []string{":3:", "not a socktop agent's URL", "ws://HOST:3000/ws"}},
		{"socktop token in URL", "hosts:\n  pi:\n    socktop: ws://pi:3000/ws?token=x\n", []string{":3:", "token key"}},
		{"token without socktop", "hosts:\n  pi:\n    token: x\n", []string{":3:", "needs socktop"}},
		{"unknown host key lists socktop", "hosts:\n  pi:\n    sockop: ws://pi:3000/ws\n", []string{":3:", "socktop, token"}},
	}
	for _, tc := range cases {
		_, err := Parse([]byte(tc.text), "monitor.yaml", Options{})
		if err == nil {
			t.Errorf("%s: parsed, want an error", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not contain %q", tc.name, err, w)
			}
		}
	}
	if _, err := Parse([]byte("users:\n  a:\n    password: s3cret-value\n"), "", Options{}); err == nil || strings.Contains(err.Error(), "s3cret-value") {
		t.Errorf("password error echoes the value: %v", err)
	}
}

func TestFleetKeys(t *testing.T) {
	text := "hbd_host: 127.0.0.1\nhbd_port: 50004\nhmac_key: k3y\nhmac_required: yes\nnsupdate_key: /etc/k.key\n" +
		"nsupdate_server: 127.0.0.1:5353\ndyndns_ttl: 30\nregister_token: t\n" +
		"hosts:\n  pi:\n    socktop: ws://pi:3000/ws\n    token: s\n    dyndns: true\n"
	c, err := Parse([]byte(text), "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:50004" || c.HMACKey != "k3y" || !c.HMACRequired || c.NsupdateKey != "/etc/k.key" ||
		c.NsupdateServer != "127.0.0.1:5353" || c.DynDNSTTL != 30*time.Second || c.RegisterToken != "t" {
		t.Errorf("config %+v", c)
	}
	if h := c.Hosts["pi"]; h.Socktop != "ws://pi:3000/ws" || h.Token != "s" || !h.DynDNS {
		t.Errorf("host %+v", h)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hmac"), []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = Parse([]byte("hmac_key_file: hmac\n"), filepath.Join(dir, "monitor.yaml"), Options{})
	if err != nil || c.HMACKey != "from-file" {
		t.Fatalf("hmac_key_file: %v, %q", err, c.HMACKey)
	}
}

func TestListenLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:1": true, "[::1]:1": true, "localhost:1": true, "127.1.2.3:1": true,
		"0.0.0.0:1": false, ":1": false, "[::]:1": false, "10.0.0.1:1": false, "example.com:1": false, "bad": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v", addr, got)
		}
	}
	if _, err := Parse([]byte("listen: 127.0.0.1:50004\n"), "", Options{}); err != nil {
		t.Errorf("loopback listen without users: %v", err)
	}
}

func TestChannelValidator(t *testing.T) {
	_, err := Parse([]byte("notification_channels:\n  x:\n    type: carrier_pigeon\n"), "m.yaml", Options{
		ValidateChannel: func(name string, n *yaml.Node) error {
			var v struct{ Type string }
			if err := n.Decode(&v); err != nil {
				return err
			}
			return errors.New("unknown channel type " + v.Type + " (accepted: email, webhook)")
		},
	})
	if err == nil || !strings.Contains(err.Error(), "m.yaml:3: notification_channels.x: unknown channel type carrier_pigeon") {
		t.Errorf("validator error: %v", err)
	}
}

func TestLoadModeAndSecretFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "monitor.yaml")
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("tok-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alice.pw"), []byte(hash+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := "register_token_file: token\nusers:\n  alice:\n    password_file: " + filepath.Join(dir, "alice.pw") + "\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, Options{})
	if err == nil || !strings.Contains(err.Error(), "mode 0644") || !strings.Contains(err.Error(), "chmod 600 "+path) {
		t.Fatalf("world-readable config: %v", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.RegisterToken != "tok-123" || c.Users["alice"].Password != hash {
		t.Errorf("secrets from files: token %q password %q", c.RegisterToken, c.Users["alice"].Password)
	}
	if err := os.Chmod(filepath.Join(dir, "token"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, Options{}); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("readable secret file: %v", err)
	}
	if err := os.WriteFile(path, []byte("register_token: a\nregister_token_file: token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, Options{}); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("token and token file: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml"), Options{}); err == nil {
		t.Error("missing file loaded")
	}
}

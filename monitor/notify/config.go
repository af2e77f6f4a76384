package notify

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Factory builds a channel of one type from its entry's fields. It reads
// every key it knows through f; ParseChannels refuses the keys it did not
// read.
type Factory func(name string, f *Fields) (Channel, error)

// Types maps a channel type name (the `type:` value) to its factory. The
// set of built-in types is monitor/notify/channels.Builtin.
type Types map[string]Factory

// Options tells ParseChannels which types exist and where relative
// `*_file` paths start.
type Options struct {
	Types Types
	// Dir is the directory relative *_file paths are read from (the
	// configuration file's directory). Empty means the working directory.
	Dir string
}

// Configured is one entry of notification_channels: its channel and the
// settings every type shares.
type Configured struct {
	Channel  Channel
	MinLevel Level // WARNING (the default) or CRITICAL
	Line     int   // where the entry starts in the file
}

// Redacted is the entry's configuration with every secret replaced, for
// logs, the API and `mb monitor` output.
func (c Configured) Redacted() map[string]any {
	m := map[string]any{}
	if r, ok := c.Channel.(Redactor); ok {
		for k, v := range r.Redacted() {
			m[k] = v
		}
	}
	m["type"] = c.Channel.Type()
	m["min_level"] = string(c.MinLevel)
	return m
}

// ParseChannels reads notification_channels: node is the mapping from
// channel name to entry (nil or null means none). Every entry needs a
// `type` among opt.Types; `min_level` is WARNING (default) or CRITICAL;
// the rest is the type's own fields. Unknown types, unknown keys and bad
// values are refused with the line and the accepted values; all problems
// are reported together.
func ParseChannels(node *yaml.Node, opt Options) (map[string]Configured, error) {
	out := map[string]Configured{}
	if node != nil && node.Kind == yaml.DocumentNode && len(node.Content) == 1 {
		node = node.Content[0]
	}
	if node == nil || node.Tag == "!!null" {
		return out, nil
	}
	if node.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: notification_channels must be a mapping of channel name to its settings", node.Line)
	}
	var errs []error
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, v := node.Content[i], node.Content[i+1]
		name := k.Value
		if _, dup := out[name]; dup {
			errs = append(errs, fmt.Errorf("line %d: notification channel %q is defined twice", k.Line, name))
			continue
		}
		c, err := parseOne(name, k.Line, v, opt)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[name] = c
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func parseOne(name string, line int, v *yaml.Node, opt Options) (Configured, error) {
	for v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	if v.Kind != yaml.MappingNode {
		return Configured{}, fmt.Errorf("line %d: notification channel %q must be a mapping with a type and its settings", v.Line, name)
	}
	f, err := newFields(name, v, opt.Dir)
	if err != nil {
		return Configured{}, err
	}
	typ := f.String("type", Required)
	if f.err != nil {
		return Configured{}, f.err
	}
	factory, ok := opt.Types[typ]
	if !ok {
		return Configured{}, f.fail("type", "unknown channel type %q; accepted: %s", typ, strings.Join(typeNames(opt.Types), ", "))
	}
	minLevel := Level(f.OneOf("min_level", string(Warning), string(Warning), string(Critical)))
	ch, err := factory(name, f)
	if f.err != nil {
		return Configured{}, f.err
	}
	if err != nil {
		return Configured{}, fmt.Errorf("notification channel %q (line %d): %w", name, line, err)
	}
	if err := f.done(); err != nil {
		return Configured{}, err
	}
	return Configured{Channel: ch, MinLevel: minLevel, Line: line}, nil
}

func typeNames(t Types) []string {
	names := make([]string, 0, len(t))
	for n := range t {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Required, passed to a Fields getter, makes a missing key an error.
const Required = true

// Optional, passed to a Fields getter, lets a key be absent.
const Optional = false

// Fields reads one channel entry's keys for a Factory. A key argument may
// name aliases separated by "|" ("dst|recipient"): the first is the
// documented name, the others are accepted too (hbd's names). Getters
// record the first problem; the factory may ignore errors until it
// returns, and ParseChannels reports it with its line.
type Fields struct {
	channel string
	node    *yaml.Node
	dir     string
	vals    map[string]*yaml.Node
	keyLine map[string]int
	read    map[string]bool
	err     error
}

func newFields(channel string, node *yaml.Node, dir string) (*Fields, error) {
	f := &Fields{channel: channel, node: node, dir: dir, vals: map[string]*yaml.Node{}, keyLine: map[string]int{}, read: map[string]bool{}}
	for i := 0; i+1 < len(node.Content); i += 2 {
		k := node.Content[i]
		if _, dup := f.vals[k.Value]; dup {
			return nil, fmt.Errorf("line %d: notification channel %q: key %q given twice", k.Line, channel, k.Value)
		}
		f.vals[k.Value] = node.Content[i+1]
		f.keyLine[k.Value] = k.Line
	}
	return f, nil
}

// Channel is the name of the entry being read.
func (f *Fields) Channel() string { return f.channel }

// Err is the first problem recorded so far.
func (f *Fields) Err() error { return f.err }

// fail records (and returns) an error about key at its line.
func (f *Fields) fail(key, format string, args ...any) error {
	line := f.node.Line
	if l, ok := f.keyLine[key]; ok {
		line = l
	}
	err := fmt.Errorf("line %d: notification channel %q: %s: %s", line, f.channel, key, fmt.Sprintf(format, args...))
	if f.err == nil {
		f.err = err
	}
	return err
}

// Fail records a problem with key, reported at its line.
func (f *Fields) Fail(key, format string, args ...any) error { return f.fail(key, format, args...) }

// lookup finds the first present name of spec and marks all its names read.
func (f *Fields) lookup(spec string) (string, *yaml.Node) {
	names := strings.Split(spec, "|")
	found, node := names[0], (*yaml.Node)(nil)
	for _, n := range names {
		f.read[n] = true
		if v, ok := f.vals[n]; ok && node == nil {
			found, node = n, v
		}
	}
	for node != nil && node.Kind == yaml.AliasNode {
		node = node.Alias
	}
	return found, node
}

func (f *Fields) scalar(key string, v *yaml.Node) (string, bool) {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		f.fail(key, "must be a single value")
		return "", false
	}
	return v.Value, true
}

// String returns key's value ("" when absent and optional).
func (f *Fields) String(spec string, required bool) string {
	key, v := f.lookup(spec)
	if v == nil {
		if required {
			f.fail(key, "missing; this channel type needs it")
		}
		return ""
	}
	s, ok := f.scalar(key, v)
	if ok && s == "" && required {
		f.fail(key, "must not be empty")
	}
	return s
}

// Secret returns key's value, or the contents of the file named by
// key_file (trailing newlines removed). Giving both is an error.
func (f *Fields) Secret(spec string, required bool) Secret {
	names := strings.Split(spec, "|")
	fileSpec := make([]string, len(names))
	for i, n := range names {
		fileSpec[i] = n + "_file"
	}
	key, v := f.lookup(spec)
	fkey, fv := f.lookup(strings.Join(fileSpec, "|"))
	switch {
	case v != nil && fv != nil:
		f.fail(key, "given both as %s and %s; keep one", key, fkey)
		return Secret{}
	case fv != nil:
		path, ok := f.scalar(fkey, fv)
		if !ok {
			return Secret{}
		}
		if path == "" {
			f.fail(fkey, "must name a file")
			return Secret{}
		}
		if !filepath.IsAbs(path) && f.dir != "" {
			path = filepath.Join(f.dir, path)
		}
		b, err := readSecretFile(path)
		if err != nil {
			f.fail(fkey, "%v", err)
			return Secret{}
		}
		s := strings.TrimRight(string(b), "\r\n")
		if s == "" {
			f.fail(fkey, "the file %s is empty", path)
		}
		return NewSecret(s)
	case v != nil:
		s, ok := f.scalar(key, v)
		if ok && s == "" && required {
			f.fail(key, "must not be empty")
		}
		return NewSecret(s)
	}
	if required {
		f.fail(key, "missing; give it as %s or read it from a file with %s", key, fkey)
	}
	return Secret{}
}

// Strings returns key's value as a list: a sequence of values, or a single
// value (hbd accepts both for recipients).
func (f *Fields) Strings(spec string, required bool) []string {
	key, v := f.lookup(spec)
	if v == nil {
		if required {
			f.fail(key, "missing; this channel type needs it")
		}
		return nil
	}
	var out []string
	switch v.Kind {
	case yaml.ScalarNode:
		if v.Value != "" && v.Tag != "!!null" {
			out = []string{v.Value}
		}
	case yaml.SequenceNode:
		for _, e := range v.Content {
			s, ok := f.scalar(key, e)
			if !ok {
				return nil
			}
			if s == "" {
				f.fail(key, "has an empty entry")
				return nil
			}
			out = append(out, s)
		}
	default:
		f.fail(key, "must be a value or a list of values")
		return nil
	}
	if required && len(out) == 0 {
		f.fail(key, "must not be empty")
	}
	return out
}

// Int returns key's value as an integer in [min, max], or def when absent.
func (f *Fields) Int(spec string, def, min, max int) int {
	key, v := f.lookup(spec)
	if v == nil {
		return def
	}
	s, ok := f.scalar(key, v)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < min || n > max {
		f.fail(key, "%q is not a whole number from %d to %d", s, min, max)
		return def
	}
	return n
}

// Bool returns key's value as true or false, or def when absent.
func (f *Fields) Bool(spec string, def bool) bool {
	key, v := f.lookup(spec)
	if v == nil {
		return def
	}
	s, ok := f.scalar(key, v)
	if !ok {
		return def
	}
	switch strings.ToLower(s) {
	case "true", "yes", "on":
		return true
	case "false", "no", "off":
		return false
	}
	f.fail(key, "%q is not a boolean; accepted: true, false", s)
	return def
}

// Duration returns key's value, plain seconds as hbd writes them or a Go
// duration such as 30s, or def when absent.
func (f *Fields) Duration(spec string, def time.Duration) time.Duration {
	key, v := f.lookup(spec)
	if v == nil {
		return def
	}
	s, ok := f.scalar(key, v)
	if !ok {
		return def
	}
	if n, err := strconv.ParseFloat(s, 64); err == nil && n >= 0 {
		return time.Duration(n * float64(time.Second))
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		f.fail(key, "%q is not a duration; use seconds (30) or a duration such as 30s or 5m", s)
		return def
	}
	return d
}

// OneOf returns key's value, which must be one of accepted (compared
// without regard to case, returned as spelled in accepted), or def when
// absent.
func (f *Fields) OneOf(spec, def string, accepted ...string) string {
	key, v := f.lookup(spec)
	if v == nil {
		return def
	}
	s, ok := f.scalar(key, v)
	if !ok {
		return def
	}
	for _, a := range accepted {
		if strings.EqualFold(s, a) {
			return a
		}
	}
	f.fail(key, "%q is not accepted; accepted: %s", s, strings.Join(accepted, ", "))
	return def
}

// URL returns key's value, which must be an absolute http or https URL.
func (f *Fields) URL(spec string, required bool) string {
	s := f.String(spec, required)
	if s != "" {
		key, _ := f.lookup(spec)
		f.checkURL(key, s)
	}
	return s
}

// SecretURL is URL for a URL that carries a key (an incoming webhook): it
// is a Secret, and may be read from key_file.
func (f *Fields) SecretURL(spec string, required bool) Secret {
	s := f.Secret(spec, required)
	if s.IsSet() {
		key, _ := f.lookup(spec)
		if !checkURLText(s.Reveal()) {
			f.fail(key, "is not an http:// or https:// URL")
		}
	}
	return s
}

func (f *Fields) checkURL(key, s string) {
	if !checkURLText(s) {
		f.fail(key, "%q is not an http:// or https:// URL", PublicURL(s))
	}
}

func checkURLText(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && !strings.ContainsAny(s, " \n\r\t")
}

// done refuses the keys nobody read, naming the accepted ones.
func (f *Fields) done() error {
	if f.err != nil {
		return f.err
	}
	var unknown []string
	for k := range f.vals {
		if !f.read[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Slice(unknown, func(i, j int) bool { return f.keyLine[unknown[i]] < f.keyLine[unknown[j]] })
	accepted := make([]string, 0, len(f.read))
	for k := range f.read {
		accepted = append(accepted, k)
	}
	sort.Strings(accepted)
	accepted = slices.Compact(accepted)
	return f.fail(unknown[0], "unknown key for this channel type; accepted: %s", strings.Join(accepted, ", "))
}

// readSecretFile reads a *_file secret. Like monitor.yaml, the file must
// not be readable by group or others.
func readSecretFile(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the secret: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("cannot read the secret: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s holds a secret but is readable by others (mode %04o); run: chmod 600 %s", path, st.Mode().Perm(), path)
	}
	b, err := io.ReadAll(io.LimitReader(fh, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("cannot read the secret: %w", err)
	}
	return b, nil
}

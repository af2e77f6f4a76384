package spec

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Size is a number of bytes. In YAML and on the command line it is written
// with a binary suffix (K, M, G, T; "512M", "2G"); a plain number means MiB.
type Size uint64

// ParseSize parses "512M", "2G", "1.5G" or a plain number of MiB.
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(strings.ToUpper(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "IB"), "B")
	if t == "" {
		return 0, fmt.Errorf("bad size %q: use a number with K, M, G or T (for example 512M or 2G)", s)
	}
	mult := float64(1 << 20)
	switch t[len(t)-1] {
	case 'K':
		mult, t = 1<<10, t[:len(t)-1]
	case 'M':
		mult, t = 1<<20, t[:len(t)-1]
	case 'G':
		mult, t = 1<<30, t[:len(t)-1]
	case 'T':
		mult, t = 1<<40, t[:len(t)-1]
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 || v*mult > 1<<50 {
		return 0, fmt.Errorf("bad size %q: use a positive number with K, M, G or T (for example 512M or 2G)", s)
	}
	return Size(v * mult), nil
}

// MiB returns the size in mebibytes, rounded down.
func (s Size) MiB() uint64 { return uint64(s) >> 20 }

// String renders the size with the largest exact binary suffix.
func (s Size) String() string {
	switch {
	case s == 0:
		return "0"
	case s%(1<<30) == 0:
		return fmt.Sprintf("%dG", s>>30)
	case s%(1<<20) == 0:
		return fmt.Sprintf("%dM", s>>20)
	case s%(1<<10) == 0:
		return fmt.Sprintf("%dK", s>>10)
	}
	return fmt.Sprintf("%dB", uint64(s))
}

// UnmarshalYAML accepts "512M" or a plain number of MiB.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*s = v
	return nil
}

// MarshalYAML writes the size with its suffix.
func (s Size) MarshalYAML() (any, error) { return s.String(), nil }

// Duration is a time.Duration written as "30s" or "2m".
type Duration time.Duration

// UnmarshalYAML accepts Go duration syntax.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: bad duration %q: use a number with a unit, for example 30s or 2m", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as "30s".
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// String renders the duration.
func (d Duration) String() string { return time.Duration(d).String() }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Accel is the QEMU accelerator: auto, kvm, hvf or tcg.
type Accel string

// Accelerators.
const (
	AccelAuto Accel = "auto"
	AccelKVM  Accel = "kvm"
	AccelHVF  Accel = "hvf"
	AccelTCG  Accel = "tcg"
)

// ParseAccel checks an accelerator name.
func ParseAccel(s string) (Accel, error) {
	switch a := Accel(s); a {
	case AccelAuto, AccelKVM, AccelHVF, AccelTCG:
		return a, nil
	}
	return "", fmt.Errorf("bad accel %q: accepted values: auto, kvm, hvf, tcg", s)
}

// UnmarshalYAML checks the value.
func (a *Accel) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseAccel(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*a = v
	return nil
}

// RestartPolicy says when the daemon restarts a VM that ended.
type RestartPolicy string

// Restart policies.
const (
	RestartNo        RestartPolicy = "no"
	RestartOnFailure RestartPolicy = "on-failure"
	RestartAlways    RestartPolicy = "always"
)

// ParseRestartPolicy checks a restart policy name.
func ParseRestartPolicy(s string) (RestartPolicy, error) {
	switch p := RestartPolicy(s); p {
	case RestartNo, RestartOnFailure, RestartAlways:
		return p, nil
	}
	return "", fmt.Errorf("bad restart policy %q: accepted values: no, on-failure, always", s)
}

// UnmarshalYAML checks the value. YAML 1.1's "no" arrives as the string
// "no" here, and "false" is taken to mean "no" as well.
func (p *RestartPolicy) UnmarshalYAML(n *yaml.Node) error {
	v := n.Value
	if v == "false" {
		v = "no"
	}
	r, err := ParseRestartPolicy(v)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*p = r
	return nil
}

// MarshalYAML quotes "no" so YAML 1.1 readers do not take it for false.
func (p RestartPolicy) MarshalYAML() (any, error) {
	return &yaml.Node{Kind: yaml.ScalarNode, Value: string(p), Style: yaml.DoubleQuotedStyle}, nil
}

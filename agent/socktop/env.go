package socktop

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// The environment variables socktop_agent reads, read the same way here.
const (
	EnvToken        = "SOCKTOP_TOKEN"
	EnvEnableSSL    = "SOCKTOP_ENABLE_SSL"
	EnvMetricsTTL   = "SOCKTOP_AGENT_METRICS_TTL_MS"
	EnvProcessesTTL = "SOCKTOP_AGENT_PROCESSES_TTL_MS"
	EnvDisksTTL     = "SOCKTOP_AGENT_DISKS_TTL_MS"
)

// Env is what socktop's environment variables say; zero values mean unset.
type Env struct {
	Token                              string
	EnableSSL                          bool
	MetricsTTL, ProcessesTTL, DisksTTL time.Duration
}

// ReadEnv reads socktop's environment variables through getenv (os.Getenv).
func ReadEnv(getenv func(string) string) (Env, error) {
	e := Env{Token: getenv(EnvToken)}
	switch v := getenv(EnvEnableSSL); v {
	case "", "0", "false":
	default:
		e.EnableSSL = true
	}
	for name, dst := range map[string]*time.Duration{EnvMetricsTTL: &e.MetricsTTL, EnvProcessesTTL: &e.ProcessesTTL, EnvDisksTTL: &e.DisksTTL} {
		v := getenv(name)
		if v == "" {
			continue
		}
		ms, err := strconv.Atoi(v)
		if err != nil || ms <= 0 {
			return e, fmt.Errorf("%s=%q: %w", name, v, ErrBadTTL)
		}
		*dst = time.Duration(ms) * time.Millisecond
	}
	return e, nil
}

// ErrBadTTL is returned by ReadEnv for a TTL that is not a positive number
// of milliseconds.
var ErrBadTTL = errors.New("not a positive number of milliseconds")

package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/mbvm/mb/vm/spec"
)

// parseShares parses --share HOST:GUEST[:ro] values; a relative host path
// is taken from the working directory.
func parseShares(vals []string) ([]spec.Share, error) {
	var out []spec.Share
	for _, v := range vals {
		parts := strings.Split(v, ":")
		ro := false
		if n := len(parts); n == 3 && (parts[2] == "ro" || parts[2] == "rw") {
			ro = parts[2] == "ro"
			parts = parts[:2]
		}
		if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
			return nil, fmt.Errorf("bad share %q: want HOST:GUEST or HOST:GUEST:ro, for example ~/src:/src", v)
		}
		host := parts[0]
		if host != "~" && !strings.HasPrefix(host, "~/") && !filepath.IsAbs(host) {
			abs, err := filepath.Abs(host)
			if err != nil {
				return nil, fmt.Errorf("share %q: %w", v, err)
			}
			host = abs
		}
		out = append(out, spec.Share{Host: host, Guest: parts[1], ReadOnly: ro})
	}
	return out, nil
}

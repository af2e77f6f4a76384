package guestinit

import (
	"fmt"
	"path"
	"strings"
)

// SharesParam is the kernel command line parameter that lists the host
// folder shares the guest mounts at boot: mb.shares=TAG:PATH[:ro],...
const SharesParam = "mb.shares"

// Share is one host folder share to mount.
type Share struct {
	Tag, Path string
	ReadOnly  bool
}

// ParseShares parses the value of mb.shares.
func ParseShares(v string) ([]Share, error) {
	var out []Share
	if v == "" {
		return nil, nil
	}
	for _, item := range strings.Split(v, ",") {
		parts := strings.Split(item, ":")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || !path.IsAbs(parts[1]) {
			return nil, fmt.Errorf("%s: bad entry %q: want TAG:/PATH or TAG:/PATH:ro", SharesParam, item)
		}
		sh := Share{Tag: parts[0], Path: path.Clean(parts[1])}
		if len(parts) == 3 {
			if parts[2] != "ro" && parts[2] != "rw" {
				return nil, fmt.Errorf("%s: bad entry %q: the third field is ro or rw", SharesParam, item)
			}
			sh.ReadOnly = parts[2] == "ro"
		}
		out = append(out, sh)
	}
	return out, nil
}

// FormatShares is ParseShares' inverse, for the host.
func FormatShares(shares []Share) string {
	items := make([]string, len(shares))
	for i, sh := range shares {
		items[i] = sh.Tag + ":" + sh.Path
		if sh.ReadOnly {
			items[i] += ":ro"
		}
	}
	return strings.Join(items, ",")
}

package spec

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// Share is a host directory shared with the guest (virtiofs on the
// applevirt backend).
type Share struct {
	// Host is the host directory: an absolute path or one starting with ~/.
	Host string `yaml:"host"`
	// Guest is where the guest mounts it: an absolute path.
	Guest string `yaml:"guest"`
	// ReadOnly makes the share read-only for the guest.
	ReadOnly bool `yaml:"read_only,omitempty"`
	// Tag is the name the guest mounts the share by (mount -t virtiofs TAG
	// DIR); see ShareTag for the default.
	Tag string `yaml:"tag,omitempty"`
}

// MaxShareTagLen is the longest tag Linux's virtiofs driver accepts.
const MaxShareTagLen = 36

var shareTagRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ShareTag returns the tag of the i-th share: its own, or "mb-share-I".
func (s *Spec) ShareTag(i int) string {
	if t := s.Shares[i].Tag; t != "" {
		return t
	}
	return fmt.Sprintf("mb-share-%d", i)
}

// HostPath returns the share's host directory with a leading ~ expanded to
// the user's home directory.
func (sh Share) HostPath() (string, error) {
	p := sh.Host
	if p == "~" || strings.HasPrefix(p, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("share %s: expand ~: %w", sh.Host, err)
		}
		p = filepath.Join(home, strings.TrimPrefix(p, "~"))
	}
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("share host %q: use an absolute path or one starting with ~/ (for example ~/src)", sh.Host)
	}
	return filepath.Clean(p), nil
}

// validateShares checks every share: a host directory that exists, an
// absolute guest path, and tags that are valid and unique.
func (s *Spec) validateShares() []error {
	var errs []error
	tags := map[string]int{}
	guests := map[string]bool{}
	for i, sh := range s.Shares {
		if sh.Host == "" {
			errs = append(errs, fmt.Errorf("shares[%d]: host is empty: name the host directory to share (for example ~/src)", i))
		} else if p, err := sh.HostPath(); err != nil {
			errs = append(errs, fmt.Errorf("shares[%d]: %w", i, err))
		} else if st, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("shares[%d]: host directory %s does not exist: create it or fix the path", i, p))
		} else if err != nil {
			errs = append(errs, fmt.Errorf("shares[%d]: host directory %s: %w", i, p, err))
		} else if !st.IsDir() {
			errs = append(errs, fmt.Errorf("shares[%d]: host path %s is not a directory: share a directory", i, p))
		}
		switch {
		case sh.Guest == "" || !path.IsAbs(sh.Guest):
			errs = append(errs, fmt.Errorf("shares[%d]: guest path %q: use an absolute path in the guest (for example /mnt/src)", i, sh.Guest))
		case path.Clean(sh.Guest) == "/":
			errs = append(errs, fmt.Errorf("shares[%d]: guest path /: mount a share below the root (for example /mnt/src)", i))
		case guests[path.Clean(sh.Guest)]:
			errs = append(errs, fmt.Errorf("shares[%d]: guest path %s is used by another share: give each share its own mount point", i, sh.Guest))
		default:
			guests[path.Clean(sh.Guest)] = true
		}
		tag := s.ShareTag(i)
		if len(tag) > MaxShareTagLen || !shareTagRE.MatchString(tag) {
			errs = append(errs, fmt.Errorf("shares[%d]: tag %q: use 1 to %d letters, digits, dots, dashes and underscores, starting with a letter or digit", i, tag, MaxShareTagLen))
		}
		if j, dup := tags[tag]; dup {
			errs = append(errs, fmt.Errorf("shares[%d]: tag %q is also the tag of shares[%d]: tags must be unique", i, tag, j))
		} else {
			tags[tag] = i
		}
	}
	return errs
}

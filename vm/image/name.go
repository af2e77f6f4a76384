package image

import (
	"fmt"
	"net/url"
	"path"
	"strings"

	"github.com/mbvm/mb/vm/spec"
)

// ValidateName checks an image name (see spec.ValidateImageName): the one
// rule for every place a name enters, specs, the API and the CLI.
func ValidateName(name string) error {
	if err := spec.ValidateImageName(name); err != nil {
		return fmt.Errorf("%w; pass --name", err)
	}
	return nil
}

// diskExts are the extensions NameFromSource strips.
var diskExts = []string{".qcow2", ".img", ".raw", ".disk"}

// NameFromSource derives an image name from a URL or file path: the base
// name without its disk extension, lower-cased, other characters turned
// into dashes. "https://x/debian-12-genericcloud-amd64.qcow2" gives
// "debian-12-genericcloud-amd64".
func NameFromSource(src string) string {
	p := src
	if u, err := url.Parse(src); err == nil && u.Scheme != "" {
		p = u.Path
	}
	base := strings.ToLower(path.Base(p))
	for _, ext := range diskExts {
		base = strings.TrimSuffix(base, ext)
	}
	var b strings.Builder
	for _, r := range base {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteRune('-')
		}
	}
	name := strings.Trim(b.String(), ".-_")
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], ".-_")
	}
	return name
}

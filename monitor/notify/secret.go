package notify

import (
	"log/slog"
	"net/url"
	"strings"
)

// redactedText is what a secret shows everywhere it could be printed.
const redactedText = "<redacted>"

// Secret holds a password, token or key from the configuration. It prints,
// logs and marshals as "<redacted>" (or "" when unset); only Reveal gives
// the value. It holds a pointer so that even fmt's reflective printing of
// a struct that contains it shows an address, never the text.
type Secret struct{ p *string }

// NewSecret wraps v.
func NewSecret(v string) Secret {
	if v == "" {
		return Secret{}
	}
	return Secret{&v}
}

// Reveal returns the secret's value, for the one place that sends it.
func (s Secret) Reveal() string {
	if s.p == nil {
		return ""
	}
	return *s.p
}

// IsSet reports whether the secret has a value.
func (s Secret) IsSet() bool { return s.p != nil }

// String returns "<redacted>", or "" when unset.
func (s Secret) String() string {
	if s.p == nil {
		return ""
	}
	return redactedText
}

// GoString is String, so %#v does not show the value either.
func (s Secret) GoString() string { return s.String() }

// MarshalText is String, so JSON, YAML and text encoders redact it.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// LogValue redacts s in slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Scrub replaces every occurrence of the secrets' values in text with
// "<redacted>", for error texts that may echo a request. For a secret that
// is a URL, its path and query are replaced too.
func Scrub(text string, secrets ...Secret) string {
	for _, s := range secrets {
		if v := s.Reveal(); v != "" {
			text = strings.ReplaceAll(text, v, redactedText)
			if q := url.QueryEscape(v); q != v {
				text = strings.ReplaceAll(text, q, redactedText)
			}
			// A service may echo only the path or query of a URL whose
			// key is in them (an incoming webhook's /services/T/B/KEY).
			if u, err := url.Parse(v); err == nil && u.Scheme != "" && u.Host != "" {
				for _, part := range []string{u.EscapedPath(), u.Path, u.RawQuery} {
					if len(strings.Trim(part, "/")) >= 4 {
						text = strings.ReplaceAll(text, part, redactedText)
					}
				}
			}
		}
	}
	return text
}

// RedactURL shows only the scheme and host of a URL whose path or query
// carries a key (incoming webhooks), for Redacted views.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return redactedText
	}
	return u.Scheme + "://" + u.Host + "/" + redactedText
}

// PublicURL drops the user information and query of a URL, keeping its
// scheme, host and path.
func PublicURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return redactedText
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = redactedText
	}
	u.Fragment = ""
	return u.String()
}

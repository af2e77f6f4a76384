// Package safetext makes text that came from outside mb (a guest agent, a
// fleet host, a client) safe to print on a terminal or show on a page:
// control characters, which a terminal obeys (escape sequences can retitle
// the window, move the cursor, rewrite what was printed before or answer
// back), and bidirectional overrides, which reorder what a reader sees, are
// removed; invalid UTF-8 becomes U+FFFD.
package safetext

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Clean returns s without control characters (C0, DEL, C1) and without
// bidirectional formatting characters, with invalid UTF-8 replaced by
// U+FFFD, cut to at most max bytes (no limit when max <= 0) on a rune
// boundary. Tabs and newlines are control characters too: the result is
// always one line.
func Clean(s string, max int) string {
	if isClean(s) && (max <= 0 || len(s) <= max) {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				r = unicode.ReplacementChar
			}
		}
		if drop(r) {
			continue
		}
		if max > 0 && b.Len()+utf8.RuneLen(r) > max {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isClean(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if drop(r) {
			return false
		}
	}
	return true
}

// drop reports whether r must not reach a terminal.
func drop(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
		return true
	}
	return false
}

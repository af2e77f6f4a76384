package qgaproto

import (
	"encoding/base64"
	"strconv"
)

// quickInputPrefix is how the host's client (agent/qga) encodes every
// mb-exec-input request, up to the PID.
const quickInputPrefix = `{"execute":"` + ExecInputCommand + `","arguments":{"pid":`

// ParseExecInput decodes obj when it is an mb-exec-input request exactly
// as the host's client encodes it: {"execute":"mb-exec-input","arguments":
// {"pid":N[,"data":"BASE64"][,"eof":true|false]}}. Anything else, even
// valid JSON that means the same, reports false and is left to the
// agent's general, strict decoder.
//
// Stdin is the one bulk stream into the guest. encoding/json scans such a
// request three times byte by byte (the envelope, its raw arguments, the
// arguments), which under emulation held `mb cp` into the guest to about
// 4 MiB/s; this reads the base64 once, to decode it. The host's client
// tests that its requests take this path.
func ParseExecInput(obj []byte) (ExecInputArgs, bool) {
	var a ExecInputArgs
	rest, ok := cutPrefix(obj, quickInputPrefix)
	if !ok {
		return a, false
	}
	n := 0
	for n < len(rest) && n < 10 && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	if n == 0 || (n > 1 && rest[0] == '0') {
		return a, false
	}
	pid, err := strconv.Atoi(string(rest[:n]))
	if err != nil {
		return a, false
	}
	a.PID, rest = pid, rest[n:]
	if r, ok := cutPrefix(rest, `,"data":"`); ok {
		end := 0
		for end < len(r) && isBase64Byte(r[end]) {
			end++
		}
		if end == len(r) || r[end] != '"' {
			return a, false
		}
		a.Data = make([]byte, base64.StdEncoding.DecodedLen(end))
		m, err := base64.StdEncoding.Decode(a.Data, r[:end])
		if err != nil {
			return a, false
		}
		a.Data, rest = a.Data[:m], r[end+1:]
	}
	if r, ok := cutPrefix(rest, `,"eof":true`); ok {
		a.EOF, rest = true, r
	} else if r, ok := cutPrefix(rest, `,"eof":false`); ok {
		rest = r
	}
	return a, string(rest) == "}}"
}

// cutPrefix is bytes.CutPrefix with a string prefix (no conversion).
func cutPrefix(b []byte, prefix string) ([]byte, bool) {
	if len(b) < len(prefix) || string(b[:len(prefix)]) != prefix {
		return b, false
	}
	return b[len(prefix):], true
}

// isBase64Byte is the standard alphabet and its padding.
func isBase64Byte(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '='
}

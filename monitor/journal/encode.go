package journal

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// errSlowPath: a value the fast encoder does not handle.
var errSlowPath = errors.New("journal: not handled by the fast encoder")

// appendEntry appends e as one JSON line, byte for byte what
// encoding/json with SetEscapeHTML(false) writes, without reflection for
// the values the engine journals (maps, strings, numbers, booleans, times,
// lists). It returns errSlowPath for anything else.
func appendEntry(b []byte, e *Entry) ([]byte, error) {
	b = append(b, `{"timestamp":`...)
	var err error
	if b, err = appendFloat(b, e.Timestamp); err != nil {
		return b, err
	}
	b = append(b, `,"datetime":`...)
	b = appendString(b, e.Datetime)
	b = append(b, `,"source_ip":`...)
	b = appendString(b, e.SourceIP)
	b = append(b, `,"source_port":`...)
	b = strconv.AppendInt(b, int64(e.SourcePort), 10)
	b = append(b, `,"message":`...)
	if b, err = appendValue(b, e.Message, 0); err != nil {
		return b, err
	}
	return append(b, "}\n"...), nil
}

func appendValue(b []byte, v any, depth int) ([]byte, error) {
	if depth > 32 {
		return b, errSlowPath
	}
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendString(b, x), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case float64:
		return appendFloat(b, x)
	case float32:
		return appendFloat32(b, x)
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case int32:
		return strconv.AppendInt(b, int64(x), 10), nil
	case uint64:
		return strconv.AppendUint(b, x, 10), nil
	case uint32:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case time.Time:
		if y := x.Year(); y < 0 || y >= 10000 {
			return b, errSlowPath
		}
		b = append(b, '"')
		b = x.AppendFormat(b, time.RFC3339Nano)
		return append(b, '"'), nil
	case map[string]any:
		if x == nil {
			return append(b, "null"...), nil
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		var err error
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			if b, err = appendValue(b, x[k], depth+1); err != nil {
				return b, err
			}
		}
		return append(b, '}'), nil
	case []any:
		if x == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		var err error
		for i, y := range x {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendValue(b, y, depth+1); err != nil {
				return b, err
			}
		}
		return append(b, ']'), nil
	case []string:
		if x == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		for i, y := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, y)
		}
		return append(b, ']'), nil
	case json.Marshaler:
		return b, errSlowPath
	}
	return b, errSlowPath
}

// appendFloat formats like encoding/json: shortest representation, 'e'
// notation only for very small or large magnitudes.
func appendFloat(b []byte, f float64) ([]byte, error) {
	return appendFloatBits(b, f, 64)
}

func appendFloat32(b []byte, f float32) ([]byte, error) {
	return appendFloatBits(b, float64(f), 32)
}

func appendFloatBits(b []byte, f float64, bits int) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, errSlowPath // encoding/json refuses them; the slow path says so
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	n := len(b)
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' {
		// clean up e-09 to e-9
		if m := len(b) - n; m >= 4 && b[len(b)-4] == 'e' && b[len(b)-3] == '-' && b[len(b)-2] == '0' {
			b[len(b)-2] = b[len(b)-1]
			b = b[:len(b)-1]
		}
	}
	return b, nil
}

const hexDigits = "0123456789abcdef"

// appendString quotes s as encoding/json does without HTML escaping.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

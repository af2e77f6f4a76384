// Package frame splits a QGA byte stream into JSON objects. QGA sends JSON
// objects back to back, not necessarily one per line, and either side may
// see half-written or garbage input after a reconnect; a 0xFF byte marks a
// resynchronisation point. The Reader here tolerates all of that: it checks
// the structure of each object as it reads, abandons an object at the first
// syntax error (restarting at the offending '{' when there is one), skips
// bytes between objects, reports 0xFF bytes, and never holds more than its
// limit in memory.
package frame

import (
	"bufio"
	"io"
)

// Kind says what Reader.Next found.
type Kind int

// The kinds of event Reader.Next returns.
const (
	// Object is a complete object, structurally valid JSON (scalars are
	// checked only by the caller's json.Unmarshal).
	Object Kind = iota
	// Delimiter is a 0xFF byte. Any partial object before it is dropped.
	Delimiter
	// TooLarge is an object longer than the limit; its bytes were discarded.
	TooLarge
	// Invalid is an object abandoned at a syntax error.
	Invalid
)

// String names the kind for logs.
func (k Kind) String() string {
	switch k {
	case Object:
		return "object"
	case Delimiter:
		return "delimiter"
	case TooLarge:
		return "too-large"
	case Invalid:
		return "invalid"
	}
	return "unknown"
}

// MaxDepth is the deepest nesting of objects and arrays accepted.
const MaxDepth = 128

type expect uint8

const (
	expValue expect = iota
	expValueOrClose
	expKey
	expKeyOrClose
	expColon
	expCommaOrClose
)

// Reader reads JSON objects from a stream. It is not safe for concurrent use.
type Reader struct {
	r   *bufio.Reader
	max int

	// State of the object being read; depth 0 means between objects.
	stack      []byte
	exp        expect
	inString   bool
	stringKey  bool
	escape     bool
	inScalar   bool
	size       int
	discarding bool
	buf        []byte

	// pending is a byte to process again before reading more (the '{'
	// that revealed a syntax error).
	pending    byte
	hasPending bool
}

// NewReader returns a Reader over r that refuses objects longer than max
// bytes.
func NewReader(r io.Reader, max int) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// SetLimit changes the longest object accepted, from the next object on.
func (f *Reader) SetLimit(max int) { f.max = max }

// Reset drops any partial object and buffered state of the current object.
// Bytes already buffered from the stream are kept.
func (f *Reader) Reset() {
	f.resetObject()
	f.hasPending = false
}

func (f *Reader) resetObject() {
	f.stack = f.stack[:0]
	f.inString, f.escape, f.inScalar, f.discarding = false, false, false, false
	f.size = 0
	f.buf = nil
}

// Next reads until it has an event to report. For Object it returns the
// object's bytes, which the caller owns. It returns a read error as is
// (io.EOF, a deadline); the partial object survives it, so a caller that
// wants a clean start calls Reset.
func (f *Reader) Next() (Kind, []byte, error) {
	for {
		if !f.hasPending {
			f.skipRun()
		}
		var c byte
		if f.hasPending {
			c, f.hasPending = f.pending, false
		} else {
			var err error
			c, err = f.r.ReadByte()
			if err != nil {
				return 0, nil, err
			}
		}
		if c == 0xFF {
			f.Reset()
			return Delimiter, nil, nil
		}
		if len(f.stack) == 0 {
			if c == '{' {
				f.begin()
			}
			continue
		}
		kind, done := f.step(c)
		if done {
			return f.finish(kind)
		}
	}
}

// skipRun consumes, in bulk, buffered bytes that cannot change the state:
// the inside of a string up to the next quote, escape, control byte or 0xFF,
// and garbage between objects up to the next '{' or 0xFF. This keeps large
// replies (exec output) and garbage floods cheap.
func (f *Reader) skipRun() {
	inObject := len(f.stack) > 0
	if inObject && (!f.inString || f.escape) {
		return
	}
	buf, _ := f.r.Peek(f.r.Buffered())
	n := 0
	for n < len(buf) {
		c := buf[n]
		if c == 0xFF || (!inObject && c == '{') || (inObject && (c == '"' || c == '\\' || c < 0x20)) {
			break
		}
		n++
	}
	if n == 0 {
		return
	}
	if inObject {
		f.size += n
		if !f.discarding {
			if f.size > f.max {
				f.discarding = true
				f.buf = nil
			} else {
				f.buf = append(f.buf, buf[:n]...)
			}
		}
	}
	f.r.Discard(n)
}

func (f *Reader) begin() {
	f.resetObject()
	f.stack = append(f.stack, '{')
	f.exp = expKeyOrClose
	f.size = 1
	f.buf = append(make([]byte, 0, 512), '{')
}

func (f *Reader) finish(kind Kind) (Kind, []byte, error) {
	buf, discarding := f.buf, f.discarding
	f.resetObject()
	if discarding {
		return TooLarge, nil, nil
	}
	if kind != Object {
		return kind, nil, nil
	}
	return Object, buf, nil
}

// step feeds one byte of an object; done is true when the object ended,
// completely (Object) or at a syntax error (Invalid).
func (f *Reader) step(c byte) (Kind, bool) {
	f.size++
	if !f.discarding {
		if f.size > f.max {
			f.discarding = true
			f.buf = nil
		} else {
			f.buf = append(f.buf, c)
		}
	}
	if f.inString {
		switch {
		case f.escape:
			f.escape = false
		case c == '\\':
			f.escape = true
		case c == '"':
			f.inString = false
			if f.stringKey {
				f.exp = expColon
			} else {
				return f.afterValue()
			}
		case c < 0x20:
			return f.syntaxError(c)
		}
		return 0, false
	}
	if f.inScalar {
		if isScalar(c) {
			return 0, false
		}
		// Scalars only occur inside a container (the stack is not
		// empty), so this never completes the object.
		f.inScalar = false
		f.afterValue()
	}
	switch c {
	case ' ', '\t', '\n', '\r':
		return 0, false
	}
	switch f.exp {
	case expValue, expValueOrClose:
		switch {
		case c == '{':
			return f.push(c, expKeyOrClose)
		case c == '[':
			return f.push(c, expValueOrClose)
		case c == '"':
			f.inString, f.stringKey = true, false
		case isScalar(c):
			f.inScalar = true
		case c == ']' && f.exp == expValueOrClose:
			return f.pop()
		default:
			return f.syntaxError(c)
		}
	case expKey, expKeyOrClose:
		switch {
		case c == '"':
			f.inString, f.stringKey = true, true
		case c == '}' && f.exp == expKeyOrClose:
			return f.pop()
		default:
			return f.syntaxError(c)
		}
	case expColon:
		if c != ':' {
			return f.syntaxError(c)
		}
		f.exp = expValue
	case expCommaOrClose:
		top := f.stack[len(f.stack)-1]
		switch {
		case c == ',' && top == '{':
			f.exp = expKey
		case c == ',':
			f.exp = expValue
		case c == '}' && top == '{', c == ']' && top == '[':
			return f.pop()
		default:
			return f.syntaxError(c)
		}
	}
	return 0, false
}

func (f *Reader) push(c byte, next expect) (Kind, bool) {
	if len(f.stack) >= MaxDepth {
		return f.syntaxError(0)
	}
	f.stack = append(f.stack, c)
	f.exp = next
	return 0, false
}

func (f *Reader) pop() (Kind, bool) {
	f.stack = f.stack[:len(f.stack)-1]
	return f.afterValue()
}

func (f *Reader) afterValue() (Kind, bool) {
	if len(f.stack) == 0 {
		return Object, true
	}
	f.exp = expCommaOrClose
	return 0, false
}

// syntaxError abandons the current object. A '{' that broke it may start
// the next one (the tail of a half-written object followed by a fresh
// request), so it is read again.
func (f *Reader) syntaxError(c byte) (Kind, bool) {
	if c == '{' {
		f.pending, f.hasPending = c, true
	}
	return Invalid, true
}

func isScalar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '+' || c == '-'
}

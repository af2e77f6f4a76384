package hbcwire

import (
	"bytes"
	"compress/zlib"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Limits of a datagram, enforced by Decode and Encode.
const (
	// MaxDatagram is the largest datagram accepted, in bytes.
	MaxDatagram = 64 << 10
	// MaxPayload is the largest plain payload, after inflating, in bytes.
	MaxPayload = 1 << 20
	// MaxFields is the most key=value fields one message may carry.
	MaxFields = 1024
	// maxID is the longest message ID.
	maxID = 16
)

// Message IDs.
const (
	HTB = "HTB" // heartbeat, client to server
	PLG = "PLG" // plugin data, client to server
	ACK = "ACK" // acknowledgement of an HTB, server to client
	CMD = "CMD" // queued command, server to client
	UPD = "UPD" // queued self-update, server to client
)

// Errors wrapped by Decode and Encode, for callers that count faults.
var (
	ErrTooLarge      = errors.New("datagram too large")
	ErrInflate       = errors.New("payload inflates past the limit")
	ErrTooManyFields = errors.New("too many fields")
	ErrMalformed     = errors.New("malformed datagram")
	ErrBadSignature  = errors.New("bad or missing signature")
)

// Field is one key=value pair, the value in its encoded text form.
type Field struct {
	Key   string
	Value string
}

// Message is one decoded or to-be-encoded datagram.
type Message struct {
	// ID is the message type, e.g. HTB.
	ID string
	// Fields are the pairs in wire order, sig excluded.
	Fields []Field
	// BadFields counts pairs dropped while decoding (no '=', empty key).
	BadFields int
	// Compressed reports whether the payload was zlib (decoding only).
	Compressed bool

	sig    string // the sig= value, when present
	signed string // ID ":" plain payload before ";sig=", when sig is present
}

// New returns an empty message of the given ID.
func New(id string) *Message { return &Message{ID: id} }

// Get returns the last value of key, and whether it is present.
func (m *Message) Get(key string) (string, bool) {
	for i := len(m.Fields) - 1; i >= 0; i-- {
		if m.Fields[i].Key == key {
			return m.Fields[i].Value, true
		}
	}
	return "", false
}

// String returns the value of key, decoding an @-JSON string; "" when absent.
func (m *Message) String(key string) string {
	v, ok := m.Get(key)
	if !ok {
		return ""
	}
	if strings.HasPrefix(v, "@\"") {
		var s string
		if json.Unmarshal([]byte(v[1:]), &s) == nil {
			return s
		}
	}
	return v
}

// Float returns key as a number.
func (m *Message) Float(key string) (float64, error) {
	v, ok := m.Get(key)
	if !ok {
		return 0, fmt.Errorf("hbcwire: %s: no field %q", m.ID, key)
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("hbcwire: %s: field %q is not a number: %w", m.ID, key, ErrMalformed)
	}
	return f, nil
}

// Int returns key as an integer (a float value is truncated).
func (m *Message) Int(key string) (int64, error) {
	v, ok := m.Get(key)
	if !ok {
		return 0, fmt.Errorf("hbcwire: %s: no field %q", m.ID, key)
	}
	if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
		return n, nil
	}
	f, err := m.Float(key)
	if err != nil {
		return 0, err
	}
	if f > math.MaxInt64 || f < math.MinInt64 {
		return 0, fmt.Errorf("hbcwire: %s: field %q out of range: %w", m.ID, key, ErrMalformed)
	}
	return int64(f), nil
}

// Bool returns key as a boolean; an absent key is false.
func (m *Message) Bool(key string) bool {
	v, ok := m.Get(key)
	if !ok {
		return false
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

// JSON decodes an @-JSON value of key into dst.
func (m *Message) JSON(key string, dst any) error {
	v, ok := m.Get(key)
	if !ok {
		return fmt.Errorf("hbcwire: %s: no field %q", m.ID, key)
	}
	if !strings.HasPrefix(v, "@") {
		return fmt.Errorf("hbcwire: %s: field %q is not @-JSON: %w", m.ID, key, ErrMalformed)
	}
	if err := json.Unmarshal([]byte(v[1:]), dst); err != nil {
		return fmt.Errorf("hbcwire: %s: field %q: %w: %v", m.ID, key, ErrMalformed, err)
	}
	return nil
}

// Value returns a field's value as Go data: @-JSON decoded (objects as
// map[string]any, numbers as float64), a decimal as float64, else the
// text. ok is false when the key is absent or its @-JSON is invalid.
func Value(raw string) (any, bool) {
	if strings.HasPrefix(raw, "@") {
		var v any
		if err := json.Unmarshal([]byte(raw[1:]), &v); err != nil {
			return nil, false
		}
		return v, true
	}
	if f, err := strconv.ParseFloat(raw, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
		return f, true
	}
	return raw, true
}

// Signed reports whether the message carried a sig field.
func (m *Message) Signed() bool { return m.sig != "" }

// Verify checks the sig field against key. It returns an error wrapping
// ErrBadSignature when the message is unsigned or the MAC differs.
func (m *Message) Verify(key []byte) error {
	if m.sig == "" {
		return fmt.Errorf("hbcwire: %s: unsigned message: %w", m.ID, ErrBadSignature)
	}
	want := mac(key, m.signed)
	got, err := hex.DecodeString(m.sig)
	if err != nil || !hmac.Equal(got, want) {
		return fmt.Errorf("hbcwire: %s: signature does not match: %w", m.ID, ErrBadSignature)
	}
	return nil
}

func mac(key []byte, signed string) []byte {
	h := hmac.New(sha256.New, key)
	io.WriteString(h, signed)
	return h.Sum(nil)
}

// Add appends key=value, encoding value by its type: float32/float64 with
// 5 decimals, integers in decimal, bool as 1/0, string as is (or as
// @-JSON when it could break the framing), []byte as a string, and
// anything else (slices, maps, structs) as @-JSON. It returns m.
func (m *Message) Add(key string, value any) *Message {
	m.Fields = append(m.Fields, Field{Key: key, Value: FormatValue(value)})
	return m
}

// FormatValue is the encoded text of one value, as Add writes it.
func FormatValue(value any) string {
	switch v := value.(type) {
	case string:
		return formatString(v)
	case []byte:
		return formatString(string(v))
	case float64:
		return strconv.FormatFloat(v, 'f', 5, 64)
	case float32:
		return strconv.FormatFloat(float64(v), 'f', 5, 32)
	case bool:
		if v {
			return "1"
		}
		return "0"
	case int:
		return strconv.FormatInt(int64(v), 10)
	case int8:
		return strconv.FormatInt(int64(v), 10)
	case int16:
		return strconv.FormatInt(int64(v), 10)
	case int32:
		return strconv.FormatInt(int64(v), 10)
	case int64:
		return strconv.FormatInt(v, 10)
	case uint:
		return strconv.FormatUint(uint64(v), 10)
	case uint8:
		return strconv.FormatUint(uint64(v), 10)
	case uint16:
		return strconv.FormatUint(uint64(v), 10)
	case uint32:
		return strconv.FormatUint(uint64(v), 10)
	case uint64:
		return strconv.FormatUint(v, 10)
	case nil:
		return ""
	}
	b, err := json.Marshal(value)
	if err != nil {
		return formatString(fmt.Sprint(value))
	}
	return atJSON(b)
}

// atJSON prefixes JSON with '@' and escapes ';' (which JSON allows only
// inside strings) so that the value cannot end its field early.
func atJSON(b []byte) string {
	return "@" + strings.ReplaceAll(string(b), ";", `\u003b`)
}

func formatString(s string) string {
	if strings.ContainsAny(s, ";\r\n") || strings.HasPrefix(s, "@") {
		b, _ := json.Marshal(s)
		return atJSON(b)
	}
	return s
}

// EncodeOptions say how Encode frames a message.
type EncodeOptions struct {
	// Plain writes the payload as text instead of zlib.
	Plain bool
	// Key, when set, signs the message with a final sig field.
	Key []byte
}

// Encode returns the datagram for m, with a fresh Encoder.
func Encode(m *Message, opt EncodeOptions) ([]byte, error) {
	var e Encoder
	return e.Encode(m, opt)
}

// Encoder encodes datagrams, reusing its compressor and buffers between
// calls. It is not safe for concurrent use; the zero value is ready.
type Encoder struct {
	zw  *zlib.Writer // BestSpeed, for larger payloads
	zs  *zlib.Writer // stored blocks, for small ones
	p   bytes.Buffer
	out bytes.Buffer
}

// storedBelow is the payload size under which the zlib stream holds the
// payload in stored (uncompressed) blocks: a few bytes longer, and far
// cheaper to make than a Huffman block for a short ACK.
const storedBelow = 512

// Encode returns the datagram for m. The result is valid until the next
// call.
func (e *Encoder) Encode(m *Message, opt EncodeOptions) ([]byte, error) {
	if err := checkID(m.ID); err != nil {
		return nil, err
	}
	if len(m.Fields) > MaxFields {
		return nil, fmt.Errorf("hbcwire: %s: %d fields, at most %d: %w", m.ID, len(m.Fields), MaxFields, ErrTooManyFields)
	}
	p := &e.p
	p.Reset()
	p.WriteString(m.ID)
	p.WriteByte(':')
	for i, f := range m.Fields {
		if f.Key == "" || strings.ContainsAny(f.Key, "=;\r\n") || strings.TrimSpace(f.Key) != f.Key || f.Key == "sig" {
			return nil, fmt.Errorf("hbcwire: %s: bad key %q (non-empty, no '=', ';', line breaks or edge spaces, not \"sig\"): %w", m.ID, f.Key, ErrMalformed)
		}
		if strings.ContainsAny(f.Value, ";\r\n") && !strings.HasPrefix(f.Value, "@") {
			return nil, fmt.Errorf("hbcwire: %s: value of %q contains ';' or a line break; add it with Add: %w", m.ID, f.Key, ErrMalformed)
		}
		if i > 0 {
			p.WriteByte(';')
		}
		p.WriteString(f.Key)
		p.WriteByte('=')
		p.WriteString(f.Value)
	}
	if opt.Key != nil {
		h := hmac.New(sha256.New, opt.Key)
		h.Write(p.Bytes())
		var sum [sha256.Size]byte
		if len(m.Fields) > 0 {
			p.WriteByte(';')
		}
		p.WriteString("sig=")
		var hx [2 * sha256.Size]byte
		hex.Encode(hx[:], h.Sum(sum[:0]))
		p.Write(hx[:])
	}
	payload := p.Bytes()[len(m.ID)+1:]
	if len(payload) > MaxPayload {
		return nil, fmt.Errorf("hbcwire: %s: payload of %d bytes, at most %d: %w", m.ID, len(payload), MaxPayload, ErrInflate)
	}
	out := &e.out
	out.Reset()
	out.WriteByte('!')
	out.WriteString(m.ID)
	out.WriteString(": ")
	if opt.Plain {
		out.Write(payload)
	} else {
		zw := &e.zw
		level := zlib.BestSpeed
		if len(payload) < storedBelow {
			zw, level = &e.zs, zlib.NoCompression
		}
		if *zw == nil {
			*zw, _ = zlib.NewWriterLevel(out, level)
		} else {
			(*zw).Reset(out)
		}
		(*zw).Write(payload)
		if err := (*zw).Close(); err != nil {
			return nil, fmt.Errorf("hbcwire: compress: %w", err)
		}
	}
	if out.Len() > MaxDatagram {
		return nil, fmt.Errorf("hbcwire: %s: datagram of %d bytes, at most %d: %w", m.ID, out.Len(), MaxDatagram, ErrTooLarge)
	}
	if e.p.Cap() > 4*MaxDatagram {
		e.p = bytes.Buffer{}
	}
	return out.Bytes(), nil
}

func checkID(id string) error {
	if id == "" || len(id) > maxID {
		return fmt.Errorf("hbcwire: message ID %q: 1 to %d letters, digits or '_': %w", id, maxID, ErrMalformed)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("hbcwire: message ID %q: 1 to %d letters, digits or '_': %w", id, maxID, ErrMalformed)
		}
	}
	return nil
}

// Decoder decodes datagrams, reusing its inflate state and buffer between
// calls. It is not safe for concurrent use; the zero value is ready.
type Decoder struct {
	zr  io.ReadCloser
	br  bytes.Reader
	buf bytes.Buffer
}

// Decode decodes one datagram with a fresh Decoder.
func Decode(b []byte) (*Message, error) {
	var d Decoder
	return d.Decode(b)
}

// Decode decodes one datagram. The message does not refer to b.
func (d *Decoder) Decode(b []byte) (*Message, error) {
	if len(b) > MaxDatagram {
		return nil, fmt.Errorf("hbcwire: datagram of %d bytes, at most %d: %w", len(b), MaxDatagram, ErrTooLarge)
	}
	if len(b) < 3 || b[0] != '!' {
		return nil, fmt.Errorf("hbcwire: datagram does not start with '!<ID>:': %w", ErrMalformed)
	}
	colon := bytes.IndexByte(b[:min(len(b), maxID+2)], ':')
	if colon < 0 {
		return nil, fmt.Errorf("hbcwire: no ':' after the message ID: %w", ErrMalformed)
	}
	id := string(b[1:colon])
	if err := checkID(id); err != nil {
		return nil, err
	}
	raw := b[colon+1:]
	if len(raw) > 0 && raw[0] == ' ' {
		raw = raw[1:]
	}
	m := &Message{ID: id}
	var payload string
	if isZlib(raw) {
		p, err := d.inflate(raw)
		if errors.Is(err, ErrInflate) {
			return nil, fmt.Errorf("hbcwire: %s: %w", id, err)
		}
		if err == nil {
			payload = p
			m.Compressed = true
		} else {
			payload = string(raw) // not zlib after all: plain text
		}
	} else {
		payload = string(raw)
	}
	if !m.Compressed {
		payload = strings.TrimRight(payload, "\r\n")
	}
	if err := m.parse(payload); err != nil {
		return nil, err
	}
	return m, nil
}

// isZlib reports whether b starts with a zlib header: deflate with a
// window of at most 32 KiB, no preset dictionary, and a valid check.
func isZlib(b []byte) bool {
	if len(b) < 2 {
		return false
	}
	cmf, flg := b[0], b[1]
	return cmf&0x0f == 8 && cmf>>4 <= 7 && flg&0x20 == 0 && (uint16(cmf)<<8|uint16(flg))%31 == 0
}

func (d *Decoder) inflate(raw []byte) (string, error) {
	d.br.Reset(raw)
	var err error
	if d.zr == nil {
		d.zr, err = zlib.NewReader(&d.br)
	} else {
		err = d.zr.(zlib.Resetter).Reset(&d.br, nil)
	}
	if err != nil {
		d.zr = nil
		return "", err
	}
	d.buf.Reset()
	n, err := d.buf.ReadFrom(io.LimitReader(d.zr, MaxPayload+1))
	if err != nil {
		return "", err
	}
	if n > MaxPayload {
		return "", fmt.Errorf("inflates past %d bytes: %w", MaxPayload, ErrInflate)
	}
	if d.buf.Cap() > 4*MaxDatagram {
		defer func() { d.buf = bytes.Buffer{} }() // do not keep a bomb's buffer
	}
	return d.buf.String(), nil
}

func (m *Message) parse(payload string) error {
	// Count fields before allocating them, so a million ';' cost no memory.
	if n := strings.Count(payload, ";"); n >= MaxFields {
		nonEmpty := 0
		for f := range strings.SplitSeq(payload, ";") {
			if strings.TrimSpace(f) != "" {
				nonEmpty++
				if nonEmpty > MaxFields {
					return fmt.Errorf("hbcwire: %s: more than %d fields: %w", m.ID, MaxFields, ErrTooManyFields)
				}
			}
		}
		m.Fields = make([]Field, 0, nonEmpty)
	} else {
		m.Fields = make([]Field, 0, n+1)
	}
	rest := payload
	pos := 0
	for len(rest) > 0 {
		var f string
		if i := strings.IndexByte(rest, ';'); i >= 0 {
			f, rest = rest[:i], rest[i+1:]
		} else {
			f, rest = rest, ""
		}
		start := pos
		pos += len(f) + 1
		if strings.TrimSpace(f) == "" {
			continue
		}
		eq := strings.IndexByte(f, '=')
		if eq < 0 {
			m.BadFields++
			continue
		}
		key := strings.TrimSpace(f[:eq])
		if key == "" {
			m.BadFields++
			continue
		}
		if key == "sig" {
			if strings.TrimSpace(rest) != "" {
				return fmt.Errorf("hbcwire: %s: sig must be the last field: %w", m.ID, ErrMalformed)
			}
			m.sig = strings.TrimSpace(f[eq+1:])
			signedEnd := max(start-1, 0)
			m.signed = m.ID + ":" + payload[:signedEnd]
			break
		}
		m.Fields = append(m.Fields, Field{Key: key, Value: f[eq+1:]})
	}
	return nil
}

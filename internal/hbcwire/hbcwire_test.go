package hbcwire

import (
	"bytes"
	"compress/zlib"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func zlibBytes(t testing.TB, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zlib.NewWriter(&b)
	zw.Write([]byte(s))
	zw.Close()
	return b.Bytes()
}

func TestDecodeTable(t *testing.T) {
	z := func(id, p string) []byte { return append([]byte("!"+id+": "), zlibBytes(t, p)...) }
	cases := []struct {
		name       string
		in         []byte
		id         string
		compressed bool
		want       map[string]string
		bad        int
		err        error
	}{
		{"plain", []byte("!HTB: name=web1;timestamp=1700000000.12345;interval=10"), "HTB", false,
			map[string]string{"name": "web1", "timestamp": "1700000000.12345", "interval": "10"}, 0, nil},
		{"zlib", z("HTB", "name=web1;interval=10"), "HTB", true, map[string]string{"name": "web1", "interval": "10"}, 0, nil},
		{"no space after colon", []byte("!PLG:name=a;plugin=cpu_monitor"), "PLG", false, map[string]string{"plugin": "cpu_monitor"}, 0, nil},
		{"zlib no space", append([]byte("!HTB:"), zlibBytes(t, "name=z")...), "HTB", true, map[string]string{"name": "z"}, 0, nil},
		{"trailing newline and empties", []byte("!HTB: ;name=a;;interval=5;\n"), "HTB", false, map[string]string{"name": "a", "interval": "5"}, 0, nil},
		{"bad fields counted", []byte("!HTB: name=a;junk;=x;interval=5"), "HTB", false, map[string]string{"name": "a"}, 2, nil},
		{"value with =", []byte("!PLG: name=a;cmd=x=y"), "PLG", false, map[string]string{"cmd": "x=y"}, 0, nil},
		{"last wins", []byte("!HTB: name=a;name=b"), "HTB", false, map[string]string{"name": "b"}, 0, nil},
		{"not a datagram", []byte("GET / HTTP/1.0"), "", false, nil, 0, ErrMalformed},
		{"empty", []byte(""), "", false, nil, 0, ErrMalformed},
		{"no colon", []byte("!HTBHTBHTBHTBHTBHTBHTB name=a"), "", false, nil, 0, ErrMalformed},
		{"bad id", []byte("!H-B: name=a"), "", false, nil, 0, ErrMalformed},
		{"too large", append([]byte("!HTB: "), bytes.Repeat([]byte("a"), MaxDatagram)...), "", false, nil, 0, ErrTooLarge},
		{"zip bomb", z("PLG", "name=a;x="+strings.Repeat("0", MaxPayload)), "", false, nil, 0, ErrInflate},
		{"too many fields", []byte("!PLG: " + strings.Repeat("a=1;", MaxFields+1)), "", false, nil, 0, ErrTooManyFields},
		{"many empty fields fine", []byte("!PLG: " + strings.Repeat(";", 5000) + "a=1"), "PLG", false, map[string]string{"a": "1"}, 0, nil},
		{"exactly max fields", []byte("!PLG: " + strings.Repeat("a=1;", MaxFields)), "PLG", false, map[string]string{"a": "1"}, 0, nil},
		{"sig not last", []byte("!HTB: name=a;sig=00;x=1"), "", false, nil, 0, ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Decode(c.in)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("Decode = %v, %v; want error %v", m, err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if m.ID != c.id || m.Compressed != c.compressed || m.BadFields != c.bad {
				t.Fatalf("got ID %q compressed %v bad %d; want %q %v %d", m.ID, m.Compressed, m.BadFields, c.id, c.compressed, c.bad)
			}
			for k, v := range c.want {
				if got, ok := m.Get(k); !ok || got != v {
					t.Errorf("Get(%q) = %q, %v; want %q", k, got, ok, v)
				}
			}
		})
	}
}

func TestRoundTripValues(t *testing.T) {
	type disk struct {
		Mount string  `json:"mount"`
		Used  float64 `json:"used"`
	}
	for _, plain := range []bool{false, true} {
		m := New(PLG).Add("name", "web;1").Add("plugin", "disk_monitor").
			Add("f", 0.25).Add("i", 42).Add("b", true).Add("nb", false).
			Add("disks", []disk{{"/", 1.5}}).Add("at", "@home").Add("nl", "a\nb").
			Add("dict", map[string]int{"x": 1})
		b, err := Encode(m, EncodeOptions{Plain: plain})
		if err != nil {
			t.Fatal(err)
		}
		if plain && !bytes.HasPrefix(b, []byte("!PLG: name=@\"web\\u003b1\";plugin=disk_monitor;f=0.25000;i=42;b=1;nb=0;disks=@[")) {
			t.Fatalf("plain encoding: %s", b)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if got.Compressed == plain {
			t.Fatalf("compressed = %v, plain = %v", got.Compressed, plain)
		}
		if s := got.String("name"); s != "web;1" {
			t.Errorf("name = %q", s)
		}
		if s := got.String("at"); s != "@home" {
			t.Errorf("at = %q", s)
		}
		if s := got.String("nl"); s != "a\nb" {
			t.Errorf("nl = %q", s)
		}
		if f, err := got.Float("f"); err != nil || f != 0.25 {
			t.Errorf("f = %v, %v", f, err)
		}
		if i, err := got.Int("i"); err != nil || i != 42 {
			t.Errorf("i = %v, %v", i, err)
		}
		if !got.Bool("b") || got.Bool("nb") || got.Bool("absent") {
			t.Errorf("booleans wrong")
		}
		var ds []disk
		if err := got.JSON("disks", &ds); err != nil || len(ds) != 1 || ds[0].Mount != "/" || ds[0].Used != 1.5 {
			t.Errorf("disks = %v, %v", ds, err)
		}
		v, ok := Value(got.Fields[len(got.Fields)-1].Value)
		if mv, _ := v.(map[string]any); !ok || mv["x"] != 1.0 {
			t.Errorf("dict = %#v", v)
		}
		if _, err := got.Float("name"); !errors.Is(err, ErrMalformed) {
			t.Errorf("Float(name) err = %v", err)
		}
	}
}

func TestSignature(t *testing.T) {
	key := []byte("secret")
	for _, plain := range []bool{false, true} {
		m := New(ACK).Add("timestamp", 1.5).Add("request_update", 1)
		b, err := Encode(m, EncodeOptions{Plain: plain, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Signed() || got.Verify(key) != nil {
			t.Fatalf("signed message does not verify: %v", got.Verify(key))
		}
		if _, ok := got.Get("sig"); ok {
			t.Fatal("sig kept as a field")
		}
		if err := got.Verify([]byte("other")); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("wrong key verified: %v", err)
		}
	}
	// Tampering with a value, or the ID, breaks the MAC.
	b, _ := Encode(New(CMD).Add("command", "true"), EncodeOptions{Plain: true, Key: key})
	for _, bad := range [][]byte{
		bytes.Replace(b, []byte("true"), []byte("rm -rf /"), 1),
		bytes.Replace(b, []byte("!CMD"), []byte("!UPD"), 1),
	} {
		m, err := Decode(bad)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Verify(key); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("tampered %q verified: %v", bad, err)
		}
	}
	unsigned, _ := Decode([]byte("!CMD: command=true"))
	if err := unsigned.Verify(key); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("unsigned verified: %v", err)
	}
	// An independent computation of the MAC, as a client in another
	// language would do it.
	empty, _ := Encode(New(HTB), EncodeOptions{Plain: true, Key: key})
	if want := "!HTB: sig=" + hexMAC(key, "HTB:"); string(empty) != want {
		t.Fatalf("empty signed = %q, want %q", empty, want)
	}
}

func TestEncodeRefuses(t *testing.T) {
	for name, m := range map[string]*Message{
		"bad id":     New("A B"),
		"key with =": New(HTB).Add("a=b", 1),
		"key sig":    New(HTB).Add("sig", 1),
		"raw ;":      {ID: HTB, Fields: []Field{{"a", "x;y"}}},
		"too many":   {ID: HTB, Fields: make([]Field, MaxFields+1)},
		"too large":  New(PLG).Add("x", strings.Repeat("a", MaxPayload+1)),
	} {
		if _, err := Encode(m, EncodeOptions{Plain: true}); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
	// Incompressible data larger than a datagram.
	big := make([]byte, MaxDatagram)
	for i := range big {
		big[i] = byte('a' + (i*7919)%26)
	}
	if _, err := Encode(New(PLG).Add("x", string(big)), EncodeOptions{Plain: true}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized plain: %v", err)
	}
}

func TestDecoderReuse(t *testing.T) {
	var d Decoder
	bomb := append([]byte("!PLG: "), zlibBytes(t, strings.Repeat("a", 4*MaxPayload))...)
	for i := 0; i < 3; i++ {
		b, _ := Encode(New(HTB).Add("name", "h").Add("i", i), EncodeOptions{})
		m, err := d.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := m.Int("i"); n != int64(i) {
			t.Fatalf("i = %d", n)
		}
		if _, err := d.Decode(bomb); !errors.Is(err, ErrInflate) {
			t.Fatalf("bomb: %v", err)
		}
		if _, err := d.Decode([]byte("!HTB: \x78\x9c garbage")); err != nil {
			t.Fatalf("broken zlib read as plain: %v", err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("!HTB: name=a;interval=10"))
	f.Add(append([]byte("!PLG: "), zlibBytes(f, "name=a;plugin=p;d=@{\"a\":[1,2]}")...))
	f.Add([]byte("!ACK: timestamp=1;sig=00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		if len(m.Fields) > MaxFields {
			t.Fatalf("%d fields", len(m.Fields))
		}
		// What decodes re-encodes (fields with odd values are skipped),
		// and decodes to the same fields.
		clean := New(m.ID)
		for _, fl := range m.Fields {
			if fl.Key == "sig" || strings.ContainsAny(fl.Key, "=;\r\n") || strings.TrimSpace(fl.Key) != fl.Key {
				continue
			}
			clean.Add(fl.Key, fl.Value)
		}
		out, err := Encode(clean, EncodeOptions{})
		if err != nil {
			return
		}
		back, err := Decode(out)
		if err != nil {
			t.Fatalf("re-decode of %q: %v", out, err)
		}
		if len(back.Fields) != len(clean.Fields) {
			t.Fatalf("fields %d != %d", len(back.Fields), len(clean.Fields))
		}
		for i := range back.Fields {
			if back.String(back.Fields[i].Key) != clean.String(clean.Fields[i].Key) {
				t.Fatalf("field %d: %q != %q", i, back.Fields[i], clean.Fields[i])
			}
		}
	})
}

func hexMAC(key []byte, s string) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(s))
	return hex.EncodeToString(h.Sum(nil))
}

func TestEncoderReuse(t *testing.T) {
	var e Encoder
	var d Decoder
	for i := 0; i < 6; i++ {
		opt := EncodeOptions{Plain: i%2 == 0}
		if i%3 == 0 {
			opt.Key = []byte("k")
		}
		b, err := e.Encode(New(ACK).Add("seq", i).Add("recv", float64(i)/3), opt)
		if err != nil {
			t.Fatal(err)
		}
		m, err := d.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := m.Int("seq"); n != int64(i) || m.Compressed == opt.Plain || m.Signed() != (opt.Key != nil) {
			t.Fatalf("round %d: %q", i, b)
		}
		if opt.Key != nil && m.Verify(opt.Key) != nil {
			t.Fatalf("round %d: signature", i)
		}
	}
}

func BenchmarkDecodeHTB(b *testing.B) {
	dg, _ := Encode(New(HTB).Add("name", "host-00042").Add("timestamp", 1700000000.5).Add("interval", 10).Add("seq", 7), EncodeOptions{})
	var d Decoder
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Decode(dg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeACK(b *testing.B) {
	var e Encoder
	m := New(ACK).Add("timestamp", "1700000000.50000").Add("recv", 1700000000.5).Add("sent", 1700000000.5)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Encode(m, EncodeOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

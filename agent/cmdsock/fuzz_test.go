package cmdsock

import (
	"bytes"
	"testing"
)

// Whatever a client sends, the server reads at most MaxRequest bytes and
// answers with one of its codes or routes a request: it never panics.
func FuzzReadRequest(f *testing.F) {
	for _, s := range []string{`{"Command":"a"}`, `{"Name":"b","x":[1,{}]}`, `[1]`, `{"Command":7}`, `{`, "\x00\xff", ` {"Command":"a"} trailing`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		raw, code, msg := readRequest(bytes.NewReader(data))
		switch code {
		case 0:
			if len(raw) == 0 || len(raw) > MaxRequest {
				t.Fatalf("accepted %d bytes", len(raw))
			}
			req, code, msg := parseRequest(raw)
			if code != 0 && code != CodeBadRequest {
				t.Fatalf("parse: code %d (%s)", code, msg)
			}
			if code == 0 && req == nil {
				t.Fatal("no request and no error")
			}
		case CodeBadRequest, CodeConn:
			if msg == "" {
				t.Fatalf("code %d without a message", code)
			}
		default:
			t.Fatalf("code %d (%s) for %q", code, msg, data)
		}
	})
}

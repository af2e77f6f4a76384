package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
)

// FuzzRequestParser feeds arbitrary bytes to the guest's request reader and
// dispatcher. It must never panic or hang, and every reply it writes must be
// one JSON object on its own line, after an optional 0xFF.
func FuzzRequestParser(f *testing.F) {
	f.Add([]byte(`{"execute":"guest-ping"}`))
	f.Add([]byte(`{"execute":"guest-sync-delimited","arguments":{"id":5}}` + "\n"))
	f.Add([]byte("\xff\xff{\"execute\":\"guest-info\"}garbage{\"execute\":\"guest-sync\",\"arguments\":{\"id\":-1}}"))
	f.Add([]byte(`{"execute":"guest-exec-status","arguments":{"pid":"x"}}{"execute":"nope","id":[1,{}]}`))
	f.Add([]byte(`{"execute":"guest-ping","arguments":{"a":1{"execute":"guest-get-time"}`))
	f.Add([]byte(`{"a":[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]],"execute":"guest-shutdown","arguments":{"mode":"halt"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newServer(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		s.shutdown = func(context.Context, string) error { return nil }
		// Nothing that touches the fuzzing machine's files or processes.
		for _, name := range []string{"guest-exec", "guest-file-open", "guest-file-write"} {
			delete(s.commands, name)
		}
		var out bytes.Buffer
		err := s.serveStream(context.Background(), bytes.NewReader(data), &out)
		if err != io.EOF {
			t.Fatalf("serveStream = %v, want io.EOF at the end of input", err)
		}
		for _, line := range bytes.Split(bytes.TrimSuffix(out.Bytes(), []byte("\n")), []byte("\n")) {
			if len(out.Bytes()) == 0 {
				break
			}
			line = bytes.TrimPrefix(line, []byte{0xFF})
			var r map[string]json.RawMessage
			if err := json.Unmarshal(line, &r); err != nil {
				t.Fatalf("reply %q is not a JSON object: %v", line, err)
			}
			_, ret := r["return"]
			_, e := r["error"]
			if ret == e {
				t.Fatalf("reply %q must have exactly one of return and error", line)
			}
		}
	})
}

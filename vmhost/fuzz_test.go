package vmhost

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"
)

// stubVM is the smallest controller, for fuzzing the dispatch.
type stubVM struct{}

func (stubVM) State() string                                   { return StateRunning }
func (stubVM) Stop(ctx context.Context, _ time.Duration) error { return nil }
func (stubVM) ForceStop(ctx context.Context) error             { return nil }
func (stubVM) SSHPort() int                                    { return 0 }
func (stubVM) Backend() string                                 { return "stub" }
func (stubVM) Wait() error                                     { select {} }

// FuzzDecodeRequest checks that any line either decodes into a request with
// a method or yields an error, that the server answers every line with a
// JSON reply, and that readLine never returns more than its limit.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"method":"status"}`, `{"method":"stop","timeout_seconds":5,"mode":"acpi"}`,
		`{"method":"exec","argv":["sh","-c","exit 7"],"stdin":"aGVsbG8="}`,
		`{"method":`, `null`, `[]`, `{"method":"status"}{"method":"info"}`, "\xff\xfe", `{"method":"info","x":1}`,
	} {
		f.Add([]byte(s))
	}
	srv := NewServer("/nonexistent/s.sock", "", stubVM{}, nil)
	f.Fuzz(func(t *testing.T, line []byte) {
		req, err := DecodeRequest(line)
		if err == nil && (req == nil || req.Method == "") {
			t.Fatalf("DecodeRequest(%q) = %+v without error", line, req)
		}
		if err != nil && req != nil {
			t.Fatalf("DecodeRequest(%q) returned both a request and %v", line, err)
		}
		if req != nil && (req.Method == MethodStop || req.Method == MethodForceStop || req.Method == MethodExec) {
			return // these act on the VM; dispatch is covered elsewhere
		}
		resp := srv.handleLine(context.Background(), line)
		b, err := json.Marshal(resp)
		if err != nil || !json.Valid(b) {
			t.Fatalf("reply to %q does not encode: %v", line, err)
		}
		if resp.OK == (resp.Error != "") {
			t.Fatalf("reply to %q: ok=%v with error %q", line, resp.OK, resp.Error)
		}
		got, err := readLine(bufio.NewReaderSize(bytes.NewReader(append(line, '\n')), 16), 64)
		if err == nil && len(got) > 64 {
			t.Fatalf("readLine returned %d bytes over its 64-byte limit", len(got))
		}
	})
}

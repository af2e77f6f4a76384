package qgaproto

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// strictExecInput is the general path: the envelope, then the arguments
// decoded strictly (unknown fields refused), as the agent does.
func strictExecInput(obj []byte) (ExecInputArgs, bool) {
	var req struct {
		Execute   string          `json:"execute"`
		Arguments json.RawMessage `json:"arguments"`
	}
	var a ExecInputArgs
	if json.Unmarshal(obj, &req) != nil || req.Execute != ExecInputCommand {
		return a, false
	}
	dec := json.NewDecoder(bytes.NewReader(req.Arguments))
	dec.DisallowUnknownFields()
	return a, dec.Decode(&a) == nil
}

func TestParseExecInput(t *testing.T) {
	for _, a := range []ExecInputArgs{
		{PID: 7},
		{PID: 123, Data: []byte("hello\n")},
		{PID: 1, EOF: true},
		{PID: 4194304, Data: bytes.Repeat([]byte{0, 0xff, '"', '\\'}, 1000), EOF: true},
	} {
		obj, err := json.Marshal(Request{Execute: ExecInputCommand, Arguments: a})
		if err != nil {
			t.Fatal(err)
		}
		got, ok := ParseExecInput(obj)
		if !ok || got.PID != a.PID || !bytes.Equal(got.Data, a.Data) || got.EOF != a.EOF {
			t.Errorf("ParseExecInput(%.80s) = %+v, %v; want %+v", obj, got, ok, a)
		}
	}
	// Anything but the client's own encoding goes the general way.
	for _, obj := range []string{
		`{"execute":"mb-exec-input","arguments":{"pid":7},"id":1}`,
		`{"arguments":{"pid":7},"execute":"mb-exec-input"}`,
		`{"execute": "mb-exec-input","arguments":{"pid":7}}`,
		`{"execute":"mb-exec-input","arguments":{"pid":07}}`,
		`{"execute":"mb-exec-input","arguments":{"pid":-7}}`,
		`{"execute":"mb-exec-input","arguments":{"pid":12345678901}}`,
		`{"execute":"mb-exec-input","arguments":{"pid":7,"data":"aGk\/"}}`,
		`{"execute":"mb-exec-input","arguments":{"pid":7,"data":"aGk"}}`,
		`{"execute":"mb-exec-input","arguments":{"pid":7,"data":"aGk=","x":1}}`,
		`{"execute":"mb-exec-input","arguments":{"pid":7,"eof":true,"data":"aGk="}}`,
		`{"execute":"mb-exec-input","arguments":{"pid":7}} `,
		`{"execute":"mb-exec-input","arguments":{"pid":7`,
		`{"execute":"mb-exec-read","arguments":{"pid":7}}`,
	} {
		if a, ok := ParseExecInput([]byte(obj)); ok {
			t.Errorf("ParseExecInput(%s) = %+v, true; want it left to the general decoder", obj, a)
		}
	}
}

// Whatever ParseExecInput accepts, the general decoder accepts and reads
// the same way.
func FuzzParseExecInput(f *testing.F) {
	f.Add(`{"execute":"mb-exec-input","arguments":{"pid":7,"data":"aGk=","eof":true}}`)
	f.Add(`{"execute":"mb-exec-input","arguments":{"pid":0}}`)
	f.Add(`{"execute":"mb-exec-input","arguments":{"pid":12,"data":"","eof":false}}`)
	f.Fuzz(func(t *testing.T, obj string) {
		got, ok := ParseExecInput([]byte(obj))
		if !ok {
			return
		}
		want, wok := strictExecInput([]byte(obj))
		if !wok || got.PID != want.PID || !bytes.Equal(got.Data, want.Data) || got.EOF != want.EOF {
			t.Fatalf("ParseExecInput(%q) = %+v; the general decoder: %+v, %v", obj, got, want, wok)
		}
		if strings.Count(obj, "}") < 2 {
			t.Fatalf("ParseExecInput accepted %q, which does not close its objects", obj)
		}
	})
}

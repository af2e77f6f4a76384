package qga

import (
	"bytes"
	"encoding/json"
	"errors"
	"github.com/mbvm/mb/agent/qgaproto"
	"io"
	"testing"

	"github.com/mbvm/mb/agent/internal/frame"
)

// FuzzReplyParser feeds arbitrary bytes, as a hostile guest could send them,
// to the host's reply reader and decoders. It must never panic, never hold
// more than the reply limit, and every reply it accepts must be valid JSON.
func FuzzReplyParser(f *testing.F) {
	f.Add([]byte("\xff{\"return\": 12345}\n"))
	f.Add([]byte(`{"return":{}}{"error":{"class":"GenericError","desc":"x"}}`))
	f.Add([]byte(`{"return":{"exited":true,"exitcode":7,"out-data":"aGk=","out-truncated":true}}`))
	f.Add([]byte(`{"return":{"version":"7.2","supported_commands":[{"name":"guest-ping","enabled":true}]}}`))
	f.Add([]byte(`{"return":[{"name":"eth0","ip-addresses":[{"ip-address-type":"ipv4","ip-address":"10.0.2.15","prefix":24}]}]}`))
	f.Add([]byte("\xff\xff\xff{\"ret\xffurn\":1}garbage}}]]{\"error\":null}{\"return\":null}"))
	f.Add([]byte(`{"return":"` + string(bytes.Repeat([]byte("a"), 300)) + `"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 256
		c := &Client{opts: ClientOptions{MaxReply: limit}}
		c.fr = frame.NewReader(bytes.NewReader(data), limit)
		s := &session{c: c}
		for range len(data) + 1 {
			ret, err := s.readReply("fuzz")
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				continue
			}
			if len(ret) > limit || !json.Valid(ret) {
				t.Fatalf("accepted reply value %q", ret)
			}
			// The typed decoders must cope with whatever the value is.
			var st qgaproto.ExecStatus
			var info qgaproto.Info
			var ifaces []qgaproto.Interface
			var m qgaproto.Metrics
			json.Unmarshal(ret, &st)
			json.Unmarshal(ret, &info)
			json.Unmarshal(ret, &ifaces)
			json.Unmarshal(ret, &m)
			guestIPs(ifaces)
			info.IsMBAgent()
		}
		t.Fatal("reply reader did not reach the end of its input")
	})
}

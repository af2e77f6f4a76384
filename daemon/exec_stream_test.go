package daemon

import (
	"bufio"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// vmhostDone is vmhost's side of a stream that already sent its last
// frame: it takes no more input, and its last frame is read only after
// the client's input was refused.
type vmhostDone struct {
	net.Conn
	refused chan struct{}
	last    []byte
}

func (v *vmhostDone) Write([]byte) (int, error) {
	select {
	case <-v.refused:
	default:
		close(v.refused)
	}
	return 0, errors.New("broken pipe")
}

func (v *vmhostDone) Read(b []byte) (int, error) {
	if v.last == nil {
		return 0, io.EOF
	}
	<-v.refused
	n := copy(b, v.last)
	v.last = v.last[n:]
	if len(v.last) == 0 {
		v.last = nil
	}
	return n, nil
}

func (v *vmhostDone) Close() error { return nil }

// The client's last frame racing vmhost's close must not cost the client
// the exit frame (the exec stream ended without the command's exit status
// in a VM test).
func TestRelayKeepsLastFrameWhenVMHostRefusesInput(t *testing.T) {
	client, daemonSide := net.Pipe()
	defer client.Close()
	v := &vmhostDone{refused: make(chan struct{}), last: []byte(`{"exit":0}` + "\n")}
	relayed := make(chan struct{})
	go func() {
		relayStream(daemonSide, daemonSide, v)
		close(relayed)
	}()
	go client.Write([]byte(`{"eof":true}` + "\n"))
	client.SetReadDeadline(time.Now().Add(time.Minute))
	line, err := bufio.NewReader(client).ReadString('\n')
	if err != nil || line != `{"exit":0}`+"\n" {
		t.Fatalf("the client read %q, %v; want the exit frame", line, err)
	}
	<-relayed
}

package vmhost

import "testing"

func TestCheckPeer(t *testing.T) {
	if err := checkPeer(1000, 1000); err != nil {
		t.Errorf("same uid refused: %v", err)
	}
	if err := checkPeer(0, 1000); err == nil {
		t.Error("root peer accepted by a uid 1000 server")
	}
	if err := checkPeer(1001, 1000); err == nil {
		t.Error("other uid accepted")
	}
	if err := checkPeer(1000, 0); err == nil {
		t.Error("uid 1000 peer accepted by a root server")
	}
}

package qga

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mbvm/mb/agent/qgaproto"
)

// An exec given up for a reason other than a cancelled context (a failed
// read of its output) says that reason, wrapped; the context's nil cause
// once made it "%!w(<nil>)".
func TestAbandonSaysWhy(t *testing.T) {
	why := errors.New("read its output: i/o timeout")
	stock := &qgaproto.Info{Version: "7.2.0"}
	err := (&Client{}).abandon(context.Background(), stock, 193, "sh", why)
	if !errors.Is(err, why) || strings.Contains(err.Error(), "%!") || !strings.Contains(err.Error(), "i/o timeout") {
		t.Errorf("abandon = %v, want it to wrap %q", err, why)
	}
}

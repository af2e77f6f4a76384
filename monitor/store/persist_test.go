package store

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/mbvm/mb/monitor"
)

// A state change the engine has made is stored even when the caller's
// context ends meanwhile: the daemon cancels its feeders as it stops, and
// a host that came up just before was missing after the restart (CI saw
// TestMonitorSyncAtStart find no host for a VM that had been up).
func TestStateChangeOutlivesTheCallersContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "monitor.db")
	s := open(t, path)
	eng, err := monitor.New(monitor.Options{Store: s})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// The engine applies the observation in memory; its store write must
	// not be abandoned because ctx has ended.
	_ = eng.Observe(ctx, monitor.Observation{Host: "web", Source: "vm"})
	if _, ok := eng.Host("web"); !ok {
		t.Fatal("the engine did not take the observation")
	}
	snap, err := s.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range snap.Hosts {
		if h.Name == "web" {
			return
		}
	}
	t.Errorf("the host the engine knows is not in the store after its caller's context ended: %+v", snap.Hosts)
}

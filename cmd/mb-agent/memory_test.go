package main

import (
	"runtime"
	"runtime/debug"
	"testing"
)

// sink keeps the test's allocations from being optimised away.
var sink [][]byte

// After a burst of garbage the agent gives the freed heap back at once;
// with little to give back it leaves the heap alone.
func TestReleaseFreeHeap(t *testing.T) {
	old := debug.SetGCPercent(-1) // no collection of the burst before the test's own
	defer debug.SetGCPercent(old)
	for range 64 {
		sink = append(sink, make([]byte, 128<<10))
	}
	sink = nil
	runtime.GC() // the burst is garbage now: free, not yet returned
	if f := freeHeap(); f < releaseMin {
		t.Fatalf("after 8 MiB of garbage only %d bytes of the heap are free", f)
	}
	if !releaseFreeHeap(releaseMin) {
		t.Fatalf("releaseFreeHeap with %d bytes free did not release", freeHeap())
	}
	if f := freeHeap(); f >= releaseMin {
		t.Errorf("after releaseFreeHeap %d bytes are still free and held, want under %d", f, releaseMin)
	}
	if releaseFreeHeap(releaseMin) {
		t.Error("releaseFreeHeap released again with nothing to give back")
	}
}

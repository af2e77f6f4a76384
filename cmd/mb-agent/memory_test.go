package main

import (
	"runtime/debug"
	"testing"
)

// freeHeapMetric is the heap memory the runtime holds free, not yet
// returned to the kernel.
const freeHeapMetric = "/memory/classes/heap/free:bytes"

// sink keeps the test's allocations from being optimised away.
var sink [][]byte

// Garbage allocated since the last release is collected and its memory
// given back at the next; with nothing allocated since, the heap is left
// alone.
func TestReleaseFreeHeap(t *testing.T) {
	old := debug.SetGCPercent(-1) // the test's garbage waits for the release
	defer debug.SetGCPercent(old)
	r := releaser{last: readMetric(allocsMetric)}
	for range 64 {
		sink = append(sink, make([]byte, 128<<10))
	}
	sink = nil
	if !r.release(releaseMin) {
		t.Fatal("release after 8 MiB of allocations did not collect")
	}
	if f := readMetric(freeHeapMetric); f >= releaseMin {
		t.Errorf("after the release %d bytes of the heap are free and still held, want under %d", f, releaseMin)
	}
	if r.release(releaseMin) {
		t.Error("release collected again with nothing allocated since")
	}
}

package main

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Every releaseEvery the agent role gives the guest back the heap memory
// it no longer uses, when there is at least releaseMin of it.
const (
	releaseEvery = 30 * time.Second
	releaseMin   = 256 << 10
)

// freeHeapMetric is the runtime's count of heap memory that is free and
// still held (neither in use nor returned to the kernel).
const freeHeapMetric = "/memory/classes/heap/free:bytes"

// releaseIdleMemory returns freed heap memory to the guest every
// releaseEvery until ctx ends. The runtime's own scavenger does so slowly
// (about 1% of a CPU at most), so a burst of work (a large exec, a
// socktop client) left the agent's resident set up to 1 MiB larger for
// minutes; a forced collection of a heap of a few hundred KB costs a few
// milliseconds, and is skipped while there is little to give back.
func releaseIdleMemory(ctx context.Context) {
	t := time.NewTicker(releaseEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		releaseFreeHeap(releaseMin)
	}
}

// releaseFreeHeap returns the free heap memory to the kernel when there is
// at least atLeast bytes of it, and reports whether it did.
func releaseFreeHeap(atLeast uint64) bool {
	if freeHeap() < atLeast {
		return false
	}
	debug.FreeOSMemory()
	return true
}

// freeHeap is the heap memory the runtime holds free, not yet returned.
func freeHeap() uint64 {
	sample := []metrics.Sample{{Name: freeHeapMetric}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return sample[0].Value.Uint64()
}

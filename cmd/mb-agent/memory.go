package main

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Every releaseEvery the agent role collects its garbage and gives the
// freed memory back to the guest, when it allocated releaseMin or more
// since the last time.
const (
	releaseEvery = 30 * time.Second
	releaseMin   = 64 << 10
)

// allocsMetric is the runtime's count of the bytes it ever allocated.
const allocsMetric = "/gc/heap/allocs:bytes"

// releaseIdleMemory collects and returns memory every releaseEvery until
// ctx ends. An idle agent still allocates a little for each of vmhost's
// liveness pings (about 5 KB a second); left to the collector's own pace
// (GOGC 20 of a heap of a few hundred KB, and its floor of 800 KB) and
// to the slow background scavenger, that grew its resident set by 150 KB
// every 30 s for minutes. A forced collection of such a heap costs a few
// milliseconds of the guest's CPU.
func releaseIdleMemory(ctx context.Context) {
	t := time.NewTicker(releaseEvery)
	defer t.Stop()
	r := releaser{last: readMetric(allocsMetric)}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.release(releaseMin)
	}
}

// releaser remembers how much the runtime had allocated at the last
// release.
type releaser struct{ last uint64 }

// release collects garbage and returns the free heap to the kernel when
// atLeast bytes or more were allocated since the last release, and
// reports whether it did.
func (r *releaser) release(atLeast uint64) bool {
	if readMetric(allocsMetric)-r.last < atLeast {
		return false
	}
	debug.FreeOSMemory()
	r.last = readMetric(allocsMetric)
	return true
}

// readMetric reads one uint64 runtime metric (0 when the runtime has no
// such metric).
func readMetric(name string) uint64 {
	sample := []metrics.Sample{{Name: name}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return sample[0].Value.Uint64()
}

//go:build linux

package guestinit

import (
	"testing"
	"time"
)

func TestNextBackoff(t *testing.T) {
	d := time.Duration(0)
	var got []time.Duration
	for range 9 {
		d = nextBackoff(d, time.Second) // quick exits
		got = append(got, d)
	}
	want := []time.Duration{minBackoff, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
		1600 * time.Millisecond, 3200 * time.Millisecond, 6400 * time.Millisecond, maxBackoff, maxBackoff}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("backoff after %d quick exits = %v, want %v (all: %v)", i+1, got[i], want[i], got)
		}
	}
	if d := nextBackoff(maxBackoff, stableRun); d != minBackoff {
		t.Errorf("after a stable run the backoff is %v, want %v", d, minBackoff)
	}
}

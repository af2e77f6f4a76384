package qga

import (
	"testing"
	"time"
)

func TestTokenBucket(t *testing.T) {
	var b tokenBucket
	t0 := time.Unix(1000, 0)
	n := 0
	for range 500 {
		if b.allow(t0) {
			n++
		}
	}
	if n != msgBurst {
		t.Fatalf("a burst of 500 at one instant let %d through, want %v", n, msgBurst)
	}
	if !b.allow(t0.Add(time.Second / msgRate)) {
		t.Error("no token after one refill period")
	}
	if b.allow(t0.Add(time.Second / msgRate)) {
		t.Error("two tokens after one refill period")
	}
	n = 0
	for range 500 {
		if b.allow(t0.Add(time.Hour)) {
			n++
		}
	}
	if n != msgBurst {
		t.Errorf("after a long pause %d through, want the burst %v", n, msgBurst)
	}
}

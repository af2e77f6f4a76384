package qga_test

import (
	"context"
	"testing"

	"github.com/mbvm/mb/agent/qga"
)

// BenchmarkPing measures a guest-ping round trip to mb-agent's guest side
// over a unix socket (no VM: the protocol's own cost).
func BenchmarkPing(b *testing.B) {
	_, path := startAgent(b)
	c := newClient(b, path, long)
	ctx := context.Background()
	for b.Loop() {
		if _, err := c.Ping(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExecTrue measures Exec of `true`: guest-exec plus the
// guest-exec-status polls until it exited.
func BenchmarkExecTrue(b *testing.B) {
	_, path := startAgent(b)
	c := newClient(b, path, long)
	ctx := context.Background()
	for b.Loop() {
		if _, err := c.Exec(ctx, qga.ExecRequest{Argv: []string{"true"}}); err != nil {
			b.Fatal(err)
		}
	}
}

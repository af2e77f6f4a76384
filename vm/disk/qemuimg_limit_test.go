package disk

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// qemu-img under its address-space limit still runs many I/O threads: a
// conversion with 16 parallel requests of an image with data spread over
// it aborted ("qemu_thread_create: Resource temporarily unavailable") in
// most runs while glibc reserved an arena per thread (a snapshot removal
// in the Debian test failed the same way in its qemu-img rebase).
func TestQemuImgThreadsFitTheMemoryLimit(t *testing.T) {
	needTool(t, "qemu-img", "qemu-utils")
	dir := t.TempDir()
	raw := filepath.Join(dir, "src.raw")
	f, err := os.Create(raw)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 8<<20)
	for i := range chunk {
		chunk[i] = byte(i*7 + 3)
	}
	for i := range 8 {
		if _, err := f.WriteAt(chunk, int64(i)*(128<<20)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for i := range 3 {
		out := filepath.Join(dir, "out.qcow2")
		_ = os.Remove(out)
		if _, err := runQemuImg(ctx, "convert", "-m", "16", "-W", "-f", "raw", "-O", "qcow2", raw, out); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
}

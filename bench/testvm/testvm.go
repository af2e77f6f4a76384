// Package testvm holds what tests that boot real VMs share: the
// machine-wide lock that keeps packages tested in parallel from booting
// their TCG guests at the same time on a small machine.
package testvm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mbvm/mb/internal/layout"
	"github.com/mbvm/mb/internal/testenv"
	"github.com/mbvm/mb/vm/image"
	"golang.org/x/sys/unix"
)

// LockName is the lock file in os.TempDir() that every VM-booting test
// (and the benchmark rig) takes.
const LockName = "mb-vm-tests.lock"

// Slot takes the machine-wide VM test lock for the rest of the test,
// waiting up to 20 minutes for another package's VM tests to finish.
func Slot(t testing.TB) {
	t.Helper()
	path := filepath.Join(os.TempDir(), LockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		t.Fatalf("open VM test lock: %v", err)
	}
	deadline := time.Now().Add(20 * time.Minute)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			t.Fatalf("take VM test lock %s: %v", path, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Cleanup(func() { f.Close() })
}

// Missing ends a test that cannot run here, by the one rule of
// testenv.Need: a failure under MB_REQUIRE_VM=1, a skip otherwise.
func Missing(t testing.TB, why string) {
	t.Helper()
	testenv.Need(t, why)
}

// Image loads the named image (make image builds mini and mini-qga) from
// $MB_HOME or ~/.mb, and returns that home with the manifest; without it
// the test ends through Missing.
func Image(t testing.TB, name string) (string, *image.Manifest) {
	t.Helper()
	h, err := layout.Dir()
	if err == nil {
		var m *image.Manifest
		if m, err = image.Load(h, name); err == nil {
			return h, m
		}
	}
	Missing(t, fmt.Sprintf("the %s image is not usable: %v", name, err))
	return "", nil
}

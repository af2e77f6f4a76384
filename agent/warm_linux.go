//go:build linux

package agent

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// rndReseedCRNG is RNDRESEEDCRNG, _IO('R', 0x07) in linux/random.h
// (Linux 4.17 and later; golang.org/x/sys has no name for it).
const rndReseedCRNG = 0x5207

// mixEntropy writes b into the kernel's input pool and has the kernel
// reseed its random generator from the pool at once. A write alone only
// mixes: since Linux 5.18 the generator reseeds on its own schedule (up to
// a minute), and until then two clones of one snapshot, without a vmgenid
// driver in their kernel (Debian's cloud kernel has none), give the same
// random bytes for the same sequence of reads.
func mixEntropy(b []byte) error {
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("mix entropy: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("mix entropy: %w", err)
	}
	// ENOTTY, EINVAL: a kernel older than 4.17 has no such call; the
	// entropy written is used at its next reseed.
	if err := unix.IoctlSetInt(int(f.Fd()), rndReseedCRNG, 0); err != nil && !errors.Is(err, unix.ENOTTY) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("reseed the kernel's random generator: %w", err)
	}
	return nil
}

func setClock(ns int64) error {
	ts := unix.NsecToTimespec(ns)
	return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
}

func setHostname(name string) error { return unix.Sethostname([]byte(name)) }

//go:build linux

package agent

import "golang.org/x/sys/unix"

func setClock(ns int64) error {
	ts := unix.NsecToTimespec(ns)
	return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
}

func setHostname(name string) error { return unix.Sethostname([]byte(name)) }

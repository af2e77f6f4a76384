//go:build linux

package guestinit

import (
	"os"

	"golang.org/x/sys/unix"
)

// setHostname sets the hostname from mb.hostname= (DefaultHostname when it
// is absent or invalid), writes /etc/hostname and maps the name to
// 127.0.1.1 in /etc/hosts, and returns the name set.
func (in *initProc) setHostname(want string) string {
	host := want
	if host != "" && !ValidHostname(host) {
		in.log.Warn("mb.hostname is not a valid hostname; using the default", "hostname", host, "default", DefaultHostname)
		host = ""
	}
	if host == "" {
		host = DefaultHostname
	}
	if err := unix.Sethostname([]byte(host)); err != nil {
		in.log.Error("set hostname", "hostname", host, "err", err)
		return host
	}
	if err := os.WriteFile("/etc/hostname", []byte(host+"\n"), 0o644); err != nil {
		in.log.Warn("write /etc/hostname", "err", err)
	}
	if err := addHostsEntry("/etc/hosts", host); err != nil {
		in.log.Warn("add the hostname to /etc/hosts", "err", err)
	}
	return host
}

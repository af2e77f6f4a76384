package agent

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strings"

	"github.com/mbvm/mb/agent/qgaproto"
)

// What a guest restored from saved state is told: the time (it stood
// still while the VM was saved) and, for a clone, its new identity.

// validHostname is one RFC 1123 hostname (labels of letters, digits and
// hyphens).
var validHostname = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

// goodHostname reports whether h is a hostname the guest may be given.
func goodHostname(h string) bool { return len(h) <= 253 && validHostname.MatchString(h) }

// cmdSetTime answers guest-set-time: the clock is set to the given
// nanoseconds since the epoch. Without a time qemu-ga reads the RTC; this
// agent has no RTC access of its own and refuses.
func cmdSetTime(_ context.Context, args json.RawMessage) (any, error) {
	var a struct {
		Time *int64 `json:"time"`
	}
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	if a.Time == nil {
		return nil, genericError("guest-set-time: give the time in nanoseconds since the epoch (mb-agent does not read the RTC)")
	}
	if err := setClock(*a.Time); err != nil {
		return nil, genericError("guest-set-time: %v", err)
	}
	return nil, nil
}

// cmdClone answers mb-clone: the hostname is set (and written to
// /etc/hostname where the guest has one), the entropy mixed into the
// kernel's random pool.
func cmdClone(_ context.Context, args json.RawMessage) (any, error) {
	var a qgaproto.CloneArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	if !goodHostname(a.Hostname) {
		return nil, genericError("mb-clone: bad hostname %q", a.Hostname)
	}
	if len(a.Entropy) > 4096 {
		return nil, genericError("mb-clone: at most 4096 bytes of entropy")
	}
	if len(a.Entropy) > 0 {
		if err := os.WriteFile("/dev/urandom", a.Entropy, 0); err != nil {
			return nil, genericError("mb-clone: mix entropy: %v", err)
		}
	}
	if err := setHostname(a.Hostname); err != nil {
		return nil, genericError("mb-clone: set hostname: %v", err)
	}
	if st, err := os.Lstat("/etc/hostname"); err == nil && st.Mode().IsRegular() {
		if err := os.WriteFile("/etc/hostname", []byte(a.Hostname+"\n"), 0o644); err != nil {
			return nil, genericError("mb-clone: write /etc/hostname: %v", err)
		}
	}
	addHostsEntry("/etc/hosts", a.Hostname)
	return nil, nil
}

// addHostsEntry makes name resolve locally (sudo and others look the
// hostname up), unless the file already names it or is not a regular file.
func addHostsEntry(path, name string) {
	st, err := os.Lstat(path)
	if err != nil || !st.Mode().IsRegular() {
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		for _, w := range f[min(1, len(f)):] {
			if w == name {
				return
			}
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return
	}
	defer f.Close()
	line := "127.0.1.1 " + name + "\n"
	if len(data) > 0 && data[len(data)-1] != '\n' {
		line = "\n" + line
	}
	_, _ = f.WriteString(line)
}

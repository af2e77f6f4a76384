package agent

import (
	"context"
	"encoding/json"
	"os"
	"strings"

	"github.com/mbvm/mb/agent/qgaproto"
)

// What a guest restored from saved state is told: the time (it stood
// still while the VM was saved) and, for a clone, its new identity.

// goodHostname reports whether h is a hostname the guest may be given: an
// RFC 1123 name of at most 253 characters, dot-separated labels of 1 to 63
// letters, digits and hyphens that neither start nor end with a hyphen.
// (Checked by hand: a regular expression with these bounded repeats
// compiled at start-up cost every mb-agent process, PID 1 included, about
// 90 KB of heap for a check that runs on clones only.)
func goodHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

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
		if err := mixEntropy(a.Entropy); err != nil {
			return nil, genericError("mb-clone: %v", err)
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

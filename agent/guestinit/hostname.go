package guestinit

import (
	"fmt"
	"os"
	"strings"
)

// ValidHostname reports whether name is a usable hostname: 1 to 64
// characters, letters, digits, '-' and '.', not starting with '-' or '.'.
func ValidHostname(name string) bool {
	if name == "" || len(name) > 64 || name[0] == '-' || name[0] == '.' {
		return false
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.'
		if !ok {
			return false
		}
	}
	return true
}

// addHostsEntry appends "127.0.1.1 host" to the hosts file unless the name
// is already there.
func addHostsEntry(path, host string) error {
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		for _, f := range fields[min(1, len(fields)):] {
			if f == host {
				return nil
			}
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "127.0.1.1\t%s\n", host); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

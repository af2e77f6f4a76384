package service

import (
	"os"
	"os/user"
	"path/filepath"
	"runtime"
)

// lingerDir is where systemd-logind marks the users whose services run
// without a login session.
const lingerDir = "/var/lib/systemd/linger"

// LingerHint returns the step that keeps user services (and so the mb
// daemon and VMs with restart: always) running without a login session
// and across reboots, or "" when it is not needed: not Linux, or lingering
// already on.
func LingerHint() string {
	if runtime.GOOS != "linux" {
		return ""
	}
	u, err := user.Current()
	if err != nil {
		return ""
	}
	return lingerHint(lingerDir, u.Username)
}

func lingerHint(dir, name string) string {
	if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
		return ""
	}
	return "user services stop when " + name + "'s last session ends and do not start at boot until lingering is on: run `sudo loginctl enable-linger " + name + "`"
}
